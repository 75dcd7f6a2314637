"""The `export` pipeline."""
