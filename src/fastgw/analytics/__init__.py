"""Analytics in the exporter process: what the logged rows say, for people and for monitoring."""
