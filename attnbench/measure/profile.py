"""Where the time goes: torch.profiler over warm steps, with every attention instance labelled.

Each attention instance (a `Site`) runs inside a `record_function` range named after its path, opened
and closed by forward hooks that exist only while profiling. Time is attributed by walking the
profiler's event tree: an event inside such a range, or (in train mode) an autograd backward node
created by an operator inside one, belongs to that instance.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from attnbench.backbones import Site, build_model
from attnbench.config import CaseSpec, TimingSpec, attention_entry, make_case
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.prepared import PreparedCase, prepare_case
from attnbench.modules import BASELINE
from attnbench.runtimes import EAGER, runs_torch_ops

ATTENTION_LABEL = "attention:"
"""Prefix of the record_function range around each attention instance; the site path follows."""
STEP_LABEL = "ProfilerStep"
"""The range torch.profiler opens around each step of its schedule."""
AUTOGRAD_ENGINE = "autograd::engine::evaluate_function"
"""The engine's wrapper around a backward node: a container, like a label, not an operator."""
PROFILE_STEPS = 5
"""Profiled steps per case; counts are identical between warm steps, times are averaged."""
TOP_ATTENTION_OPS = 3
CPU = torch.autograd.DeviceType.CPU
EVENT_COLUMNS = ["name", "self_cpu_us", "self_device_us", "kernels", "operator", "container", "site"]


@contextlib.contextmanager
def labelled_sites(sites: Sequence[Site]) -> Iterator[None]:
    """Wraps each site's forward in a record_function range while the block runs; the model is left as it was."""
    handles = []
    for site in sites:
        open_ranges: list[record_function] = []

        def enter(module, args, label=ATTENTION_LABEL + site.path, open_ranges=open_ranges) -> None:
            open_ranges.append(record_function(label).__enter__())

        def leave(module, args, output, open_ranges=open_ranges) -> None:
            open_ranges.pop().__exit__(None, None, None)

        handles.append(site.module.register_forward_pre_hook(enter))
        handles.append(site.module.register_forward_hook(leave, always_call=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _is_container(event: FunctionEvent) -> bool:
    """Labels and autograd's wrappers hold operators but are not operators themselves."""
    return (
        event.is_user_annotation
        or event.scope == int(torch._C._profiler.RecordScope.BACKWARD_FUNCTION)
        or event.name.startswith(AUTOGRAD_ENGINE)
    )


def _backward_sites(events: list[FunctionEvent]) -> dict[int, str]:
    """Autograd sequence number of each operator run inside an attention range -> that range's site."""
    sites: dict[int, str] = {}
    for event in events:
        if not event.name.startswith(ATTENTION_LABEL):
            continue
        pending = list(event.cpu_children)
        while pending:
            child = pending.pop()
            if child.sequence_nr >= 0:
                sites[child.sequence_nr] = event.name[len(ATTENTION_LABEL):]
            pending.extend(child.cpu_children)
    return sites


def event_rows(events: list[FunctionEvent]) -> pd.DataFrame:
    """One row per profiler event: its self times, kernels, attention site and whether it is a dispatched operator.

    `operator` marks the outermost operators (what Python or autograd dispatched, e.g. aten::linear but
    not the aten::mm inside it, nor CUDA runtime calls). A device activity (kernel, copy, memset) counts
    once, on the operator that launched it (`kernels`, `self_device_us`), or as its own row when the
    profiler linked it to none.
    """
    backward = _backward_sites(events)
    rows = []
    pending: list[tuple[FunctionEvent, str | None, bool]] = [
        (event, None, False)
        for event in events
        if event.cpu_parent is None and (event.device_type == CPU or not event.linked_correlation_id)
    ]
    while pending:
        event, site, inside_operator = pending.pop()
        if event.name.startswith(ATTENTION_LABEL):
            site = event.name[len(ATTENTION_LABEL):]
        elif event.name.startswith(AUTOGRAD_ENGINE) and event.sequence_nr in backward:
            site = backward[event.sequence_nr]
        on_cpu = event.device_type == CPU
        container = _is_container(event)
        operator = on_cpu and event.activity_type == "cpu_op" and not inside_operator and not container
        rows.append(
            {
                "name": event.name,
                "self_cpu_us": event.self_cpu_time_total if on_cpu else 0.0,
                "self_device_us": event.self_device_time_total,
                "kernels": len(event.kernels) if on_cpu else 1,
                "operator": operator,
                "container": container,
                "site": site,
            }
        )
        pending.extend((child, site, inside_operator or operator) for child in event.cpu_children)
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


@dataclass
class StepProfile:
    """The raw events of `steps` profiled steps of one model, and what is derived from them."""

    label: str
    device_type: str
    steps: int
    events: pd.DataFrame
    step_ms: list[float]
    stages: dict[str, str]
    """Site path -> stage, to group attention time by stage."""

    @property
    def on_device(self) -> bool:
        return self.device_type == "cuda"

    @property
    def time_column(self) -> str:
        """The clock a share is read on: kernel time on a GPU, CPU time on the CPU."""
        return "self_device_us" if self.on_device else "self_cpu_us"

    @property
    def mean_step_ms(self) -> float:
        return sum(self.step_ms) / len(self.step_ms)

    @property
    def operators_per_step(self) -> float:
        return self.events["operator"].sum() / self.steps

    @property
    def kernels_per_step(self) -> float | None:
        return self.events["kernels"].sum() / self.steps if self.on_device else None

    @property
    def launches_per_step(self) -> float:
        """CUDA kernels per step on a GPU, dispatched operators per step on the CPU (the kernel_count column)."""
        return self.kernels_per_step if self.on_device else self.operators_per_step

    @property
    def attention(self) -> pd.DataFrame:
        return self.events[self.events["site"].notna()]

    def attention_share(self, column: str | None = None) -> float:
        """Time inside attention instances over all profiled time, on `column`'s clock (default: time_column)."""
        column = column or self.time_column
        total = self.events[column].sum()
        return float(self.attention[column].sum() / total) if total > 0 else 0.0

    def top_ops(self, column: str | None = None, count: int = 15, attention_only: bool = False) -> pd.DataFrame:
        """Operators by self time per step: calls, ms, share of the total and the part inside attention."""
        column = column or self.time_column
        events = self.attention if attention_only else self.events
        events = events[~events["container"]]
        total = events[column].sum()
        grouped = events.assign(inside=events[column].where(events["site"].notna(), 0.0)).groupby("name")
        sums = grouped[[column, "inside"]].sum()
        table = pd.DataFrame(
            {
                "calls": grouped.size() / self.steps,
                "ms": sums[column] / self.steps / 1e3,
                "pct": sums[column] / total * 100 if total > 0 else 0.0,
                "attention_pct": sums["inside"] / sums[column].where(sums[column] > 0) * 100,
            }
        )
        table = table[table["ms"] > 0]
        return table.sort_values("ms", ascending=False).head(count)

    def attention_top_ops(self, count: int = TOP_ATTENTION_OPS) -> str:
        """`mul 41%, mean 22%, sigmoid 9%`: the attention's costliest operators, as shares of its time."""
        table = self.top_ops(count=count, attention_only=True)
        return ", ".join(f"{name.removeprefix('aten::')} {pct:.0f}%" for name, pct in table["pct"].items())

    def by_stage(self, column: str | None = None) -> pd.DataFrame:
        """Attention time per backbone stage, per step, and as a share of all profiled time."""
        column = column or self.time_column
        total = self.events[column].sum()
        attention = self.attention.assign(stage=self.attention["site"].map(self.stages))
        grouped = attention.groupby("stage", sort=False)[column].sum()
        instances = pd.Series(self.stages).value_counts(sort=False)
        return pd.DataFrame(
            {
                "instances": instances,
                "ms": (grouped / self.steps / 1e3).reindex(instances.index, fill_value=0.0),
                "pct": (grouped / total * 100).reindex(instances.index, fill_value=0.0),
            }
        )


QUIET_KINETO = "6"
"""KINETO_LOG_LEVEL above every level kineto logs at (its "USDT" start/stop lines included)."""


def profile_step(
    step: Callable[[], None],
    device: torch.device,
    sites: Sequence[Site] = (),
    *,
    label: str = "",
    warmup: int = 3,
    steps: int = PROFILE_STEPS,
    trace: Path | None = None,
) -> StepProfile:
    """Runs `warmup` steps, then profiles `steps` more with the sites labelled.

    The last warm-up step already runs under the profiler, which discards it: the profiler's own
    start-up cost lands there rather than in the first profiled step.
    """
    if steps < 1 or warmup < 1:
        raise ValueError("profile at least one step after at least one warm-up step")
    for _ in range(warmup - 1):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type != "cuda":
        # Without a GPU the profiler library (kineto) still probes for one and logs the failure and its own
        # start/stop lines on stderr: none of it is ours. Read when kineto starts; a value the user set wins.
        os.environ.setdefault("KINETO_LOG_LEVEL", QUIET_KINETO)
    with labelled_sites(sites), profile(
        activities=activities, schedule=schedule(wait=0, warmup=1, active=steps, repeat=1)
    ) as profiler:
        for _ in range(steps + 1):
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            profiler.step()
    events = list(profiler.events())
    if trace is not None:
        profiler.export_chrome_trace(str(trace))
    step_ms = [event.cpu_time_total / 1e3 for event in events if event.name.startswith(STEP_LABEL)]
    return StepProfile(
        label=label,
        device_type=device.type,
        steps=steps,
        events=event_rows(events),
        step_ms=step_ms,
        stages={site.path: site.stage for site in sites},
    )


def profile_prepared(
    prepared: PreparedCase, *, warmup: int = 3, steps: int = PROFILE_STEPS, trace: Path | None = None
) -> StepProfile:
    """Profiles the case's own step (eval forward, or train forward+backward+SGD, under its autocast).

    A compiled step runs fused kernels with no attention boundary left to label (and hooks added after
    compilation would recompile it), and a deployment runtime runs none of the model's modules, so only
    eager steps have their sites labelled: under other runtimes the attention share stays unknown.
    """
    sites = prepared.sites if prepared.case.runtime == EAGER else []
    return profile_step(
        prepared.step, prepared.device, sites, label=prepared.case.attention.label, warmup=warmup, steps=steps,
        trace=trace,
    )


def profile_against_baseline(
    case: CaseSpec, device: torch.device, timing: TimingSpec, *, warmup: int, steps: int, trace: Path | None = None
) -> tuple[StepProfile, StepProfile | None]:
    """Profiles the case and, unless it is the baseline, the plain backbone at the same point.

    The trace, when asked for, is that of the case. Its model is built first, so that options it
    cannot be built with fail before any profiling.
    """
    entry = case.attention
    built = build_model(case.backbone, entry.key, entry.options_dict, case.requested_placement)
    baseline = None
    if entry.key != BASELINE:
        plain = make_case(case.backbone, attention_entry(BASELINE), **point_of(case))
        prepared = prepare_case(plain, build_model(case.backbone), device, timing, time.perf_counter)
        baseline = profile_prepared(prepared, warmup=warmup, steps=steps)
    prepared = prepare_case(case, built, device, timing, time.perf_counter)
    return profile_prepared(prepared, warmup=warmup, steps=steps, trace=trace), baseline


def point_of(case: CaseSpec) -> dict[str, object]:
    """The grid point of a case (everything but its backbone and attention)."""
    return {
        "batch_size": case.batch_size, "resolution": case.resolution, "dtype": case.dtype, "mode": case.mode,
        "device": case.device, "channels_last": case.channels_last, "runtime": case.runtime,
    }


@metric("profile")
def profile_metric(prepared: PreparedCase, context: MeasureContext) -> MetricResult:
    """attention_time_share on the device's clock; kernel_count is CUDA kernels per step on a GPU and
    dispatched operators per step on the CPU, where no kernels are launched (and where a deployment
    runtime dispatches none, so its count stays empty)."""
    result = profile_prepared(prepared, warmup=max(1, context.timing.warmup))
    case = prepared.case
    counted = case.device.startswith("cuda") or runs_torch_ops(case)
    return MetricResult(
        {
            "attention_time_share": result.attention_share() if case.runtime == EAGER else None,
            "kernel_count": round(result.launches_per_step) if counted else None,
            "attention_top_ops": result.attention_top_ops() or None,
        }
    )
