"""Request logging: one record per request, off the hot path through a shared-memory ring to an exporter process and its sinks."""
