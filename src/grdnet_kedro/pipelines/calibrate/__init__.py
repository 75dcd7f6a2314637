"""The `calibrate` pipeline."""
