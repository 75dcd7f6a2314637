"""GRD-Net and DeepIndustrial-SN visual anomaly detection as a Kedro project."""

__version__ = "0.1.0"
