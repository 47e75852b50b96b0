"""Running one comparison group in this process: each case prepared once, the group's cases timed
together, then every other metric on each prepared case; a failure becomes that case's row."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_backbone, build_model
from attnbench.config import CaseSpec
from attnbench.errors import AttnbenchError, DeviceError
from attnbench.guards import preserved_torch_state
from attnbench.measure import METRICS, MeasureContext, MetricResult
from attnbench.measure.footprint import check_fits
from attnbench.measure.graphs import graph_columns
from attnbench.measure.prepared import PreparedCase, prepare_case
from attnbench.measure.timing import GroupTimings, latency_columns, time_group
from attnbench.process import release_memory
from attnbench.runtimes import OutputMismatch, uses_dynamo
from attnbench.schedule import Group
from attnbench.signals import CaseTimeout, time_limit

OUT_OF_MEMORY = (
    "DefaultCPUAllocator: can't allocate memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDA out of memory",
    "out of memory",
)
"""Messages of allocation failures that do not arrive as torch.cuda.OutOfMemoryError or MemoryError:
the CPU allocator's, cuBLAS's and cuDNN's, inductor's."""


@dataclass
class CaseResult:
    """A case's row for cases.csv, its raw samples for samples.csv, its attention instances for
    attention_sites.csv."""

    row: dict[str, Any]
    samples: list[float] | None = None
    wall_samples: list[float] | None = None
    rounds: list[int] | None = None
    sites: list[dict[str, Any]] | None = None
    seconds: float = 0.0
    """Time spent on this case so far: preparing it, its share of the group's timing, its metrics."""

    @property
    def failed(self) -> bool:
        return "status" in self.row


def case_row(case: CaseSpec) -> dict[str, Any]:
    return {"case_id": case.case_id, **case.key}


def failure(error: BaseException) -> dict[str, str]:
    """The status and error a failed case's row records."""
    if isinstance(error, CaseTimeout):
        return {"status": "timeout", "error": str(error)}
    if isinstance(error, DeviceError):
        return {"status": "skipped", "error": str(error)}
    if isinstance(error, torch.cuda.OutOfMemoryError):
        # No retry with a smaller batch: that would read as a fake speed-up or regression.
        return {"status": "oom", "error": str(error).splitlines()[0]}
    if isinstance(error, MemoryError):
        return {"status": "oom", "error": "MemoryError: the host ran out of memory"}
    if isinstance(error, AttnbenchError):
        return {"status": "error", "error": str(error)}
    first_line = (str(error).strip().splitlines() or [""])[0]
    if any(pattern in first_line for pattern in OUT_OF_MEMORY):
        return {"status": "oom", "error": f"{type(error).__name__}: {first_line}"}
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return {"status": "error", "error": f"{type(error).__name__}: {first_line} ({Path(frame.filename).name}:{frame.lineno})"}


def attempt(action: Callable[[], None], seconds: float | None, result: CaseResult) -> bool:
    """Runs one step of a case; a failure becomes the row's status and error. True when it succeeded.

    torch's global switches are restored however the step ends, and memory is released after a failure
    once its traceback is gone.
    """
    started = time.perf_counter()
    try:
        with preserved_torch_state(), time_limit(seconds):
            action()
        return True
    except Exception as error:  # a module that breaks is a result to report, not a reason to stop
        result.row.update(failure(error))
    finally:
        result.seconds += time.perf_counter() - started
    return False


class ModelCache:
    """The models of the backbone being run, each built once whatever its batch sizes and resolutions.

    Every model is a copy of one stock backbone (as torchvision builds it) with its module inserted, so
    the modules of a backbone are compared on the same convolution weights.
    """

    def __init__(self) -> None:
        self._backbone: str | None = None
        self._base: torch.nn.Module | None = None
        self._built: dict[tuple, BuiltModel] = {}

    @staticmethod
    def key_of(case: CaseSpec) -> tuple:
        """One model per attention entry: an A/A twin of `none` (another label) is another instance."""
        return (case.attention.key, case.attention.label, case.attention.resolved, case.placement)

    def get(self, case: CaseSpec) -> BuiltModel:
        if case.backbone != self._backbone:
            self.clear()  # free the previous backbone's models before building the next
            self._backbone, self._base = case.backbone, build_backbone(case.backbone)
        key = self.key_of(case)
        if key not in self._built:
            entry = case.attention
            self._built[key] = build_model(
                case.backbone, entry.key, entry.options_dict, case.requested_placement, base=self._base
            )
        return self._built[key]

    def drop(self, case: CaseSpec) -> None:
        self._built.pop(self.key_of(case), None)

    def clear(self) -> None:
        self._backbone, self._base = None, None
        self._built.clear()


@contextmanager
def compiling(group: Group) -> Iterator[None]:
    """Compiler state for a group: reset before (one cold compile per case) and after (nothing kept for the
    next group), and a recompile limit that lets every case of the group stay compiled at once (all of
    them compile the backbone's forward, which dynamo counts against one limit)."""
    if not any(uses_dynamo(case) for case in group.cases):
        yield
        return
    torch._dynamo.reset()
    try:
        with torch._dynamo.config.patch(recompile_limit=max(DYNAMO_RECOMPILE_LIMIT, 2 * len(group.cases))):
            yield
    finally:
        torch._dynamo.reset()


DYNAMO_RECOMPILE_LIMIT = 8
"""torch._dynamo.config.recompile_limit's default."""


@dataclass
class GroupRunner:
    """Runs comparison groups in this process, keeping models between groups of one backbone."""

    metrics: tuple[str, ...]
    context: MeasureContext
    models: ModelCache = field(default_factory=ModelCache)

    def run(self, group: Group) -> list[CaseResult]:
        with compiling(group):
            return self._run(group)

    def _run(self, group: Group, spent: dict[str, float] | None = None) -> list[CaseResult]:
        """`spent`: seconds each case already took in an attempt of a larger group."""
        results = {case.case_id: CaseResult(case_row(case), seconds=(spent or {}).get(case.case_id, 0.0))
                   for case in group.cases}
        prepared = self._prepare(group, results)
        if "latency" in self.metrics and prepared:
            timings = self._time(prepared, results)
            if isinstance(timings, GroupTimings):
                for key, case in prepared.items():
                    self._record_latency(case, timings, results[key])
            elif len(prepared) > 1:
                # Some case broke the group's timing: free the group, then time each case on its own,
                # where a failure is that case's.
                oom = timings.get("status") == "oom"
                prepared.clear()
                return self._one_by_one(group, oom, {key: result.seconds for key, result in results.items()})
            else:
                results[next(iter(prepared))].row.update(timings)
        for key, case in prepared.items():
            if not results[key].failed:
                self._measure(case, results[key])
        prepared.clear()
        if any(result.failed for result in results.values()):
            release_memory(self.context.device)
        return [self._finished(result) for result in results.values()]

    def _prepare(self, group: Group, results: dict[str, CaseResult]) -> dict[str, PreparedCase]:
        prepared: dict[str, PreparedCase] = {}
        context = self.context
        for case in group.cases:

            def prepare(case: CaseSpec = case) -> None:
                built, row = self.models.get(case), results[case.case_id].row
                check_fits(case, built, context.device, context.cache)  # before its input batch exists
                try:
                    prepared[case.case_id] = prepare_case(case, built, context.device, context.timing, context.clock)
                except OutputMismatch as mismatch:
                    row.update(mismatch.columns)  # the differences beside the error, never a latency
                    raise
                row.update(prepared[case.case_id].prepared.runtime)

            attempt(prepare, context.timing.max_case_seconds, results[case.case_id])
        return prepared

    def _time(self, prepared: dict[str, PreparedCase], results: dict[str, CaseResult]) -> GroupTimings | dict[str, str]:
        """The group's timings, or the failure (status and error) that stopped them; a failed timing's
        time is shared by the cases it timed."""
        timed: list[GroupTimings] = []
        probe = CaseResult({})
        seconds = self.context.timing.group_seconds(len(prepared))
        if attempt(lambda: timed.append(time_group(prepared, self.context.timing, self.context.clock)), seconds, probe):
            return timed[0]
        for key in prepared:
            results[key].seconds += probe.seconds / len(prepared)
        return probe.row

    def _record_latency(self, case: PreparedCase, timings: GroupTimings, result: CaseResult) -> None:
        taken = timings.timings[case.case.case_id]
        timing = self.context.timing
        result.row.update(latency_columns(case, timings, timing.precision))
        if timing.cuda_graphs and case.device.type == "cuda":
            eager_ms = result.row["latency_ms_median"]
            result.row.update(graph_columns(case, timing, self.context.clock, eager_ms, timings.l2_flush))
        result.samples, result.wall_samples, result.rounds = taken.latency_ms, taken.wall_ms, taken.rounds
        result.seconds += taken.elapsed_s

    def _one_by_one(self, group: Group, oom: bool, spent: dict[str, float]) -> list[CaseResult]:
        if oom:
            for case in group.cases:
                self.models.drop(case)
        release_memory(self.context.device)
        return [result for case in group.cases for result in self._run(Group((case,)), spent)]

    def _measure(self, prepared: PreparedCase, result: CaseResult) -> None:
        """Every metric but latency on one prepared case, in the suite's order, until one fails."""
        for name in self.metrics:
            if name == "latency":
                continue
            measured: list[MetricResult] = []
            if not attempt(lambda: measured.append(METRICS.get(name)(prepared, self.context)),
                           self.context.timing.max_case_seconds, result):
                return
            result.row.update(measured[0].columns)
            if measured[0].sites is not None:
                result.sites = measured[0].sites

    @staticmethod
    def _finished(result: CaseResult) -> CaseResult:
        """The row complete: status ok unless a step failed (then no samples), and the case's duration."""
        if result.failed:
            result.samples = result.wall_samples = result.rounds = None
        result.row.setdefault("status", "ok")
        result.row["duration_s"] = round(result.seconds, 3)
        return result
