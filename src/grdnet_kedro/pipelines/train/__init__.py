"""The `train` pipeline."""
