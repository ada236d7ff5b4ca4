"""Pipeline stages. Each wraps the next; app.build_pipeline is the one place their order is written."""
