"""Providers: where a request goes and how it authenticates. Data, plus one small module per wire format."""
