"""The built-in HTTP/1.1 server: bytes in, the gateway core, bytes out."""
