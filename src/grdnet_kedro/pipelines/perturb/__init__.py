"""The `perturb` pipeline."""
