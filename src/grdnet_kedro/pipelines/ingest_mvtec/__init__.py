"""The `ingest_mvtec` pipeline."""
