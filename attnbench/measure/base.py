"""The metric registry and what every metric receives and returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench.config import TimingSpec
from attnbench.measure.prepared import PreparedCase
from attnbench.registry import Registry


@dataclass
class MeasureContext:
    """What a metric needs beyond its prepared case: timing settings, the device, caches shared across cases."""

    timing: TimingSpec
    device: torch.device
    clock: Callable[[], float] = time.perf_counter
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricResult:
    """Columns for cases.csv; per-instance rows for attention_sites.csv."""

    columns: dict[str, Any]
    sites: list[dict[str, Any]] | None = None


Metric = Callable[[PreparedCase, MeasureContext], MetricResult]
METRICS: Registry[Metric] = Registry("metric")
"""Metrics that are functions of one prepared case. Latency is not among them: the runner times the
cases of a comparison group together (attnbench.measure.timing.time_group)."""


def metric(name: str) -> Callable[[Metric], Metric]:
    return METRICS.register(name)
