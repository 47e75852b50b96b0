"""How long a suite will take, from its case count and budgets, printed before it starts.

An estimate, not a promise: timing a group stops at its cap of max_seconds per case, or sooner once a
precision target is met, so the latency part is an upper bound; the rest (building, counting, the other
metrics, worker start-up) is a typical cost per case measured on the machines this project runs on.
"""

from __future__ import annotations

from attnbench.config import SuiteSpec
from attnbench.runtimes import runtime_of
from attnbench.schedule import plan

SETUP_S = {"cpu": 1.0, "cuda": 0.5}
"""Per case: building or copying the model, preparing it, counting its complexity (fake tensors); the
runtime's build (compile, export, optimization) comes on top (RuntimeSpec.build_estimate_s)."""
WORKER_START_S = 8.0
"""A spawned worker's start: importing torch and torchvision, a CUDA context."""
MODULE_SHAPES = 4
"""Distinct (module, input) pairs module_latency times per case: ResNet-50 has 4 (one per stage)."""


def estimate_seconds(suite: SuiteSpec, device_type: str, cases: list) -> float:
    """Seconds `cases` of `suite` take at most, roughly."""
    timing, metrics = suite.timing, suite.metrics
    per_case = SETUP_S.get(device_type, 1.0)
    if "latency" in metrics:
        per_case += timing.max_seconds * (2 if timing.cuda_graphs and device_type == "cuda" else 1)
    if "module_latency" in metrics:
        per_case += MODULE_SHAPES * timing.max_seconds
    if "memory" in metrics or "profile" in metrics:
        per_case += 0.5
    groups = len(plan(cases, timing.interleave and "latency" in metrics))
    workers = groups if timing.isolate_on(device_type) else 0
    builds = sum(runtime_of(case).build_estimate_s.get(device_type, 0.0) for case in cases
                 if runtime_of(case).unsupported(case, timing) is None)
    return len(cases) * per_case + workers * WORKER_START_S + builds


def describe(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
