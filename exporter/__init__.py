"""itnio-exporter: Prometheus metrics for ITNIO TECH automatic-redial (recall) flows."""

__version__ = "0.2.0"
