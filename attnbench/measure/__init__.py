"""Measurements: each metric is a function of one case and its built model, registered by name."""

from attnbench.measure.base import METRICS, MeasureContext, MetricResult, metric

# Importing the metric files fills the registry.
from attnbench.measure import complexity, memory, module_latency, profile, timing  # noqa: E402,F401

__all__ = ["METRICS", "MeasureContext", "MetricResult", "metric"]
