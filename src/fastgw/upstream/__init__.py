"""The pooled HTTP/1.1 client that carries requests to providers."""
