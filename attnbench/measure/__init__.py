"""Measurements of a prepared case: latency (timed per comparison group), and the registered metrics."""

from attnbench.measure.base import METRICS, MeasureContext, MetricResult, metric

# Importing the metric files fills the registry.
from attnbench.measure import complexity, memory, module_latency, profile  # noqa: E402,F401

__all__ = ["METRICS", "MeasureContext", "MetricResult", "metric"]
