"""The metric registry and what every metric receives and returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench.backbones import BuiltModel
from attnbench.config import CaseSpec, TimingSpec
from attnbench.registry import Registry


@dataclass
class MeasureContext:
    """What a metric needs beyond the case: timing settings, the device, caches shared across cases."""

    timing: TimingSpec
    device: torch.device
    clock: Callable[[], float] = time.perf_counter
    cache: dict[str, Any] = field(default_factory=dict)
    pretimed: dict[str, Any] = field(default_factory=dict)
    """case_id -> timings the runner took with other cases interleaved; the latency metric uses them."""


@dataclass
class MetricResult:
    """Columns for cases.csv; raw per-repeat device and wall times for samples.csv; per-instance rows for
    attention_sites.csv."""

    columns: dict[str, Any]
    samples: list[float] | None = None
    wall_samples: list[float] | None = None
    sites: list[dict[str, Any]] | None = None


Metric = Callable[[CaseSpec, BuiltModel, MeasureContext], MetricResult]
METRICS: Registry[Metric] = Registry("metric")


def metric(name: str) -> Callable[[Metric], Metric]:
    return METRICS.register(name)
