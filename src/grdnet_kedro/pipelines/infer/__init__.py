"""The `infer` pipeline."""
