"""Latency: warm-up, then repeats adapted to a time budget; raw samples kept, statistics derived."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from attnbench.backbones import BuiltModel
from attnbench.config import CaseSpec, TimingSpec
from attnbench.errors import DeviceError
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.stats import summarize

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def adaptive_repeats(
    step: Callable[[], None], timing: TimingSpec, clock: Callable[[], float]
) -> list[float]:
    """Milliseconds per call of `step`: at least min_repeats, then until max_seconds or max_repeats."""
    for _ in range(timing.warmup):
        step()
    samples: list[float] = []
    budget_start = clock()
    while len(samples) < timing.max_repeats:
        if len(samples) >= timing.min_repeats and clock() - budget_start >= timing.max_seconds:
            break
        start = clock()
        step()
        samples.append((clock() - start) * 1e3)
    return samples


def autocast_context(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """float32 runs as is; float16 and bfloat16 run under autocast, as mixed-precision users run them."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "float16" and device.type == "cpu":
        raise DeviceError("float16 autocast is not supported on the CPU; use bfloat16 or float32")
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def make_step(case: CaseSpec, built: BuiltModel, device: torch.device) -> Callable[[], None]:
    """One timed iteration: a forward under inference_mode (eval) or forward+backward+SGD step (train)."""
    model = built.model.to(device)
    inputs = torch.randn(case.batch_size, 3, case.resolution, case.resolution, device=device)
    autocast = autocast_context(case.dtype, device)
    if case.mode == "eval":
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast:
                model(inputs)

        return step
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(inputs).float().mean()
        loss.backward()
        optimizer.step()

    return train_step


@metric("latency")
def latency(case: CaseSpec, built: BuiltModel, context: MeasureContext) -> MetricResult:
    samples = adaptive_repeats(make_step(case, built, context.device), context.timing, context.clock)
    stats = summarize(samples)
    stats["throughput_ips"] = case.batch_size / (stats["latency_ms_median"] / 1e3)
    return MetricResult(stats, samples)
