"""Timing one model from Python, alone or against a baseline, with the steps, timers and paired rounds a
suite uses; the result keeps the raw samples and derives its statistics on demand (torch.utils.benchmark's
Measurement)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from attnbench.config import DTYPES, MODES, AttentionEntry, CaseSpec, TimingSpec, parse_timing
from attnbench.errors import DeviceError, UsageError
from attnbench.group import compiling
from attnbench.measure.prepared import compiled_graphs, memory_format, prepare_step, stored_dtype
from attnbench.measure.stats import Overhead, paired_overhead, paired_ratios, per_round, summarize
from attnbench.measure.timing import TIMERS, PrecisionTarget, Timings, group_flush, make_timer, paired_rounds
from attnbench.modules import BASELINE
from attnbench.process import resolve_device
from attnbench.registry import unknown_name_message
from attnbench.runtimes import EAGER, RUNTIMES
from attnbench.schedule import Group

Timed = nn.Module | Callable[[], object]
"""What latency() times: a model, called on the input, or a zero-argument callable, called as it is."""
Inputs = torch.Tensor | tuple[torch.Tensor, ...]

WHERE = "attnbench.latency()"
MODEL = "model"


@dataclass(frozen=True, repr=False)
class Measurement:
    """The raw samples of one timed model (ms, each with the round it was taken in) and how it was run.

    Statistics are derived from the samples when first read; with a baseline, `overhead` pairs the two
    round by round, as a suite pairs a module with its `none`.
    """

    description: str
    device: str
    dtype: str
    mode: str
    threads: int
    latency_ms: tuple[float, ...]
    """Device time of each timed call: CUDA events on a GPU, the wall clock on the CPU."""
    wall_ms: tuple[float, ...]
    """Host wall time of each timed call; above latency_ms on a GPU when the call is launch-bound."""
    rounds: tuple[int, ...]
    l2_flush: bool
    precision: float | None = None
    """The 95% interval half-width asked for, in points of the overhead (of the median, without a baseline)."""
    runtime: str = "eager"
    runtime_build_s: float | None = None
    """Seconds the runtime took to build (torch.compile's first call, an export and optimization); never
    among the samples. None for eager."""
    baseline: Measurement | None = None
    """The baseline, timed in the same rounds."""

    @cached_property
    def stats(self) -> dict[str, Any]:
        """cases.csv's latency columns: median, IQR, p10, p90, bootstrap 95% CI of the median, repeats, noisy."""
        return {**summarize(self.latency_ms), "wall_ms_median": float(np.median(self.wall_ms))}

    @property
    def median_ms(self) -> float:
        return self.stats["latency_ms_median"]

    @property
    def iqr_ms(self) -> float:
        return self.stats["latency_ms_iqr"]

    @property
    def ci_ms(self) -> tuple[float, float]:
        return self.stats["latency_ms_ci_low"], self.stats["latency_ms_ci_high"]

    @property
    def noisy(self) -> bool:
        """IQR over 10% of the median: the machine was busy, or the call varies."""
        return self.stats["noisy"]

    @cached_property
    def overhead(self) -> Overhead | None:
        """% over the baseline: the median of the per-round ratios with its distribution-free 95% interval."""
        if self.baseline is None:
            return None
        base = self.baseline
        ratios = paired_ratios(per_round(self.latency_ms, self.rounds), per_round(base.latency_ms, base.rounds))
        return paired_overhead(ratios)

    @property
    def precision_met(self) -> bool | None:
        """Whether the interval reached the precision asked for (None when none was asked)."""
        if self.precision is None:
            return None
        timings = {MODEL: Timings(list(self.latency_ms), list(self.wall_ms), list(self.rounds))}
        if self.baseline is not None:
            base = self.baseline
            timings[BASELINE] = Timings(list(base.latency_ms), list(base.wall_ms), list(base.rounds))
        return PrecisionTarget(self.precision, BASELINE if self.baseline else None).met(timings)

    @cached_property
    def samples(self) -> pd.DataFrame:
        """samples.csv's columns, without a case id: repeat, round, latency_ms, wall_ms."""
        return pd.DataFrame({
            "repeat": range(len(self.latency_ms)), "round": self.rounds,
            "latency_ms": self.latency_ms, "wall_ms": self.wall_ms,
        })

    def to_frame(self) -> pd.DataFrame:
        """One row per timed model (this one, then its baseline) with cases.csv's latency columns."""
        rows = []
        for role, measured in (("model", self), ("baseline", self.baseline)):
            if measured is None:
                continue
            row: dict[str, Any] = {
                "role": role, "description": measured.description, "device": measured.device,
                "dtype": measured.dtype, "mode": measured.mode, "threads": measured.threads, **measured.stats,
                "l2_flush": measured.l2_flush, "runtime": measured.runtime,
                "runtime_build_s": measured.runtime_build_s,
            }
            if role == "model" and self.overhead is not None:
                row.update(
                    latency_overhead_pct=self.overhead.pct, latency_overhead_ci_low_pct=self.overhead.ci_low_pct,
                    latency_overhead_ci_high_pct=self.overhead.ci_high_pct,
                )
            if role == "model" and self.precision is not None:
                row["precision_met"] = self.precision_met
            rows.append(row)
        return pd.DataFrame(rows)

    def _line(self) -> str:
        low, high = self.ci_ms
        rounds = len(set(self.rounds))
        return (
            f"median {self.median_ms:.3g} ms, 95% CI [{low:.3g}, {high:.3g}], IQR {self.iqr_ms:.3g} ms; "
            f"{len(self.latency_ms)} repeats in {rounds} rounds"
        )

    def __repr__(self) -> str:
        threads = f", {self.threads} threads" if self.device == "cpu" else ""
        lines = [
            f"<attnbench.Measurement> {self.description}: {self.device}, {self.dtype}, {self.mode}{threads}",
            f"  {self._line()}",
        ]
        if self.baseline is not None:
            lines.append(f"  baseline {self.baseline.description}: {self.baseline._line()}")
        if self.overhead is not None:
            overhead = self.overhead
            lines.append(
                f"  overhead {overhead.pct:+.3g}%, 95% CI [{overhead.ci_low_pct:+.3g}%, {overhead.ci_high_pct:+.3g}%] "
                f"from {overhead.pairs} paired rounds"
            )
        if self.precision_met is False:
            lines.append(f"  precision of ±{self.precision:g} points not reached within the time budget")
        for measured in (self, self.baseline):
            if measured is not None and measured.noisy:
                share = measured.iqr_ms / measured.median_ms
                lines.append(f"  WARNING: {measured.description} is noisy: IQR {share:.0%} of the median")
        return "\n".join(lines)


def _device(device: str | torch.device) -> torch.device:
    """`auto`, or a device a timer exists for (cpu, cuda[:N]); CUDA where there is none is refused."""
    if str(device) == "auto":
        return resolve_device("auto")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in TIMERS:
        raise DeviceError(f"{WHERE}: device {str(device)!r} cannot be timed; accepted: auto, {', '.join(TIMERS)}")
    resolve_device(resolved.type)
    return resolved


def _description(timed: Timed) -> str:
    info = getattr(timed, "attnbench", None)
    if info is not None:
        return info.backbone if info.attention.key == BASELINE else f"{info.backbone} + {info.attention.label}"
    if isinstance(timed, nn.Module):
        return type(timed).__name__
    return getattr(timed, "__qualname__", type(timed).__name__)


def _step_case(key: str, device: torch.device, dtype: str, mode: str, channels_last: bool, runtime: str) -> CaseSpec:
    """prepare_step and the compiler's reset read a case's grid point only (mode, dtype, device, memory
    format, runtime); a model timed from Python has no backbone, attention entry or image size of its own,
    so those fields are placeholders."""
    return CaseSpec(
        backbone=key, attention=AttentionEntry(key, key), batch_size=1, resolution=1, dtype=dtype, mode=mode,
        device=device.type, channels_last=channels_last, runtime=runtime,
    )


def _moved(value: Any, device: torch.device, dtype: torch.dtype, fmt: torch.memory_format) -> Any:
    """An input on the device; floating tensors in the model's stored dtype, images in its memory format."""
    if not isinstance(value, torch.Tensor):
        return value
    if not value.is_floating_point():
        return value.to(device)
    moved = value.to(device, dtype=dtype)
    return moved.contiguous(memory_format=fmt) if moved.dim() == 4 else moved


def _prepared(
    timed: Timed, inputs: tuple, case: CaseSpec, device: torch.device, timing: TimingSpec
) -> tuple[Callable[[], object], int, float | None]:
    """(step, working set in bytes, the runtime's build seconds) of a model or a callable."""
    if not isinstance(timed, nn.Module):
        # A callable's working set is unknown; counting it as zero flushes the L2 cache under `auto`, so
        # that its time is never a warm-cache one.
        return timed, 0, None
    fmt, dtype = memory_format(case), stored_dtype(case, timing)
    # A copy, so that the caller's model keeps its device, dtype, mode and (in train mode) its weights.
    model = copy.deepcopy(timed).to(device, dtype=dtype, memory_format=fmt)
    moved = tuple(_moved(value, device, dtype, fmt) for value in inputs)
    prepared = prepare_step(case, model, moved, device, timing, time.perf_counter, optimize=True)
    return prepared.step, prepared.working_set_bytes, prepared.runtime.get("runtime_build_s")


def _check(
    timed: dict[str, Timed], input: Inputs | None, dtype: str, mode: str, channels_last: bool, runtime: str
) -> None:
    for value in timed.values():
        if not callable(value):
            raise UsageError(
                f"{WHERE}: cannot time {value!r} ({type(value).__name__}); accepted: an nn.Module or a "
                "zero-argument callable"
            )
    models = sum(isinstance(value, nn.Module) for value in timed.values())
    if models and input is None:
        raise UsageError(f"{WHERE}: a model needs an input tensor (or a tuple of them) to be called on")
    if not models and input is not None:
        raise UsageError(f"{WHERE}: a callable is called without arguments; pass no input, or time the model")
    if models < len(timed):
        given = [name for name, value, default in (
            ("dtype", dtype, "float32"), ("mode", mode, "eval"), ("channels_last", channels_last, False),
            ("runtime", runtime, EAGER),
        ) if value != default]
        if given:
            raise UsageError(
                f"{WHERE}: {given[0]} applies to models, and a callable is timed as it is; "
                "time models, or leave it to the callable"
            )
    if dtype not in DTYPES:
        raise UsageError(f"{WHERE}: dtype {dtype!r} is not accepted; accepted: {', '.join(DTYPES)}")
    if mode not in MODES:
        raise UsageError(f"{WHERE}: mode {mode!r} is not accepted; accepted: {', '.join(MODES)}")
    if runtime not in RUNTIMES:
        raise UsageError(f"{WHERE}: " + unknown_name_message("runtime", runtime, RUNTIMES.names()))


def latency(
    model: Timed,
    input: Inputs | None = None,
    *,
    baseline: Timed | None = None,
    device: str | torch.device = "auto",
    dtype: str = "float32",
    mode: str = "eval",
    channels_last: bool = False,
    runtime: str = EAGER,
    warmup: int = 3,
    warmup_seconds: float = 0.25,
    min_repeats: int = 10,
    max_repeats: int = 1000,
    max_seconds: float = 1.0,
    precision: float | None = None,
) -> Measurement:
    """Times `model` on `input` (or a zero-argument callable) with a suite's step, timer and repeats.

    A model is timed as a copy moved to `device`, `dtype` (float16/bfloat16 under autocast) and memory
    format, in `mode`: `eval` is a forward under inference mode, `train` a forward, backward and SGD step.
    With `baseline`, both are timed in alternation, in rounds of random order, and the measurement's
    `overhead` comes from the per-round ratios. Timing takes `warmup` calls (fewer, at least one, once they
    took `warmup_seconds`), then at least `min_repeats` rounds, until `max_seconds` per model or
    `max_repeats` rounds, or until the 95% interval of the overhead (of the median, without a baseline)
    is within ±`precision` points.

    The process is timed as it is configured (threads, cuDNN's benchmark mode). `runtime` runs the model
    as a suite's runtime axis does (`attnbench list runtimes`): `inductor` compiles cold, with dynamo's
    caches reset before and after; a deployment runtime exports and optimizes it, and its output must match
    eager's (an OutputMismatch otherwise). Its build time is `runtime_build_s`, never among the samples.
    """
    timed = {MODEL: model} if baseline is None else {MODEL: model, BASELINE: baseline}
    _check(timed, input, dtype, mode, channels_last, runtime)
    timing = parse_timing(
        {"warmup": warmup, "warmup_seconds": warmup_seconds, "min_repeats": min_repeats,
         "max_repeats": max_repeats, "max_seconds": max_seconds,
         **({"precision": precision} if precision is not None else {})},
        WHERE, "timing", TimingSpec(),
    )
    where = _device(device)
    inputs = input if isinstance(input, tuple) else () if input is None else (input,)
    cases = {key: _step_case(key, where, dtype, mode, channels_last, runtime) for key in timed}
    with compiling(Group(tuple(cases.values()))):
        prepared = {key: _prepared(value, inputs, cases[key], where, timing) for key, value in timed.items()}
        timers = {key: make_timer(where, time.perf_counter) for key in timed}
        flushed = group_flush(list(timers.values()), timing.l2_flush, [working for _, working, _ in prepared.values()])
        reference = None if baseline is None else BASELINE
        target = PrecisionTarget(timing.precision, reference) if timing.precision else None
        steps = {key: step for key, (step, _, _) in prepared.items()}
        probe = compiled_graphs if RUNTIMES.get(runtime).dynamo else None
        # Seeded: the same call times its rounds in the same orders.
        taken = paired_rounds(steps, timing, timers, time.perf_counter, 0, target, probe)

    def measurement(key: str, base: Measurement | None = None) -> Measurement:
        return Measurement(
            description=_description(timed[key]), device=str(where), dtype=dtype, mode=mode,
            threads=torch.get_num_threads(), latency_ms=tuple(taken[key].latency_ms),
            wall_ms=tuple(taken[key].wall_ms), rounds=tuple(taken[key].rounds), l2_flush=flushed,
            precision=timing.precision, runtime=runtime, runtime_build_s=prepared[key][2], baseline=base,
        )

    return measurement(MODEL, measurement(BASELINE) if baseline is not None else None)
