"""The `report` pipeline."""
