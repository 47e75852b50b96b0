"""Expands a suite into cases, measures each one, and appends its row as soon as it finishes."""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_model, get_backbone
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, TimingSpec, expand_grid
from attnbench.errors import AttnbenchError, DeviceError
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.allocator import configure_allocator
from attnbench.measure.bandwidth import copy_bandwidth_gbs, roofline_columns
from attnbench.measure.env import environment
from attnbench.measure.timing import unsupported
from attnbench.modules import BASELINE, get_attention
from attnbench.results import RunWriter


def resolve_device(requested: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was requested but CUDA is not available here; accepted: cpu, auto")
    return torch.device(requested)


def case_row(case: CaseSpec) -> dict[str, Any]:
    entry = case.attention
    return {
        "case_id": case.case_id,
        **case.key,
        "attention_key": entry.key,
        "options": ";".join(f"{name}={value!r}" for name, value in entry.options),
        "placement": entry.placement or "",
    }


@dataclass
class CaseResult:
    """A case's row for cases.csv and its raw samples for samples.csv."""

    row: dict[str, Any]
    samples: list[float] | None = None
    wall_samples: list[float] | None = None


ProgressCallback = Callable[[int, int, CaseSpec], None]


class ModelCache:
    """Builds each (backbone, attention) model once; cases of that pair follow each other in the grid."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._built: BuiltModel | None = None

    def get(self, case: CaseSpec) -> BuiltModel:
        entry = case.attention
        key = (case.backbone, entry.key, entry.options, entry.placement)
        if key != self._key:
            self._built = None  # free the previous model before building the next
            self._built = build_model(case.backbone, entry.key, entry.options_dict, entry.placement)
            self._key = key
        return self._built


def run_case(
    case: CaseSpec, metrics: tuple[str, ...], models: ModelCache, context: MeasureContext
) -> CaseResult:
    """Measures one case; a failure inside it becomes a row with status and message, not a crash."""
    result = CaseResult(case_row(case))
    row = result.row
    started = time.perf_counter()
    reason = unsupported(case, context.timing)
    try:
        if reason:
            raise DeviceError(reason)
        built = models.get(case)
        for name in metrics:
            measured = METRICS.get(name)(case, built, context)
            row.update(measured.columns)
            if measured.samples is not None:
                result.samples, result.wall_samples = measured.samples, measured.wall_samples
        row["status"] = "ok"
    except DeviceError as error:
        row.update(status="skipped", error=str(error))
    except torch.cuda.OutOfMemoryError as error:
        torch.cuda.empty_cache()
        row.update(status="oom", error=str(error).splitlines()[0])
    except MemoryError:
        row.update(status="oom", error="MemoryError: the host ran out of memory")
    except AttnbenchError as error:
        row.update(status="error", error=str(error))
    except Exception as error:  # a module that breaks is a result to report, not a reason to stop
        frame = traceback.extract_tb(error.__traceback__)[-1]
        row.update(
            status="error",
            error=f"{type(error).__name__}: {error} ({Path(frame.filename).name}:{frame.lineno})",
        )
    row["duration_s"] = round(time.perf_counter() - started, 3)
    return result


def configure_process(device: torch.device, threads: int | None, timing: TimingSpec) -> dict[str, Any]:
    """The per-process settings timings depend on; applied in the runner and in every isolated worker.

    Returns what meta.json records about them.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = timing.cudnn_benchmark
    return {
        "cudnn_benchmark": timing.cudnn_benchmark,
        "allocator": configure_allocator(),
    }


# --- isolation: each case in a fresh process ------------------------------------------------------


def defining_modules(case: CaseSpec) -> list[str]:
    """Modules a fresh process must import to find the case's attention class and backbone builder
    (registered outside attnbench, e.g. by a plugin or a test)."""
    defined = [get_backbone(case.backbone).build.__module__]
    if case.attention.key != BASELINE:
        defined.append(get_attention(case.attention.key).cls.__module__)
    return sorted({name for name in defined if not name.startswith("attnbench.")})


def _worker(
    case: CaseSpec, metrics: tuple[str, ...], timing: TimingSpec, threads: int | None,
    imports: list[str], connection: Connection,
) -> None:
    """Runs in a spawned process: one case, the result sent back through the pipe."""
    for name in imports:
        importlib.import_module(name)
    device = torch.device(case.device)
    configure_process(device, threads, timing)
    connection.send(run_case(case, metrics, ModelCache(), MeasureContext(timing=timing, device=device)))
    connection.close()


def crash_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            cause = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            cause = f"killed by signal {-exitcode}"
    else:
        cause = f"exited with code {exitcode}"
    return f"the isolated worker process {cause} before reporting a result"


def run_isolated(
    case: CaseSpec, metrics: tuple[str, ...], timing: TimingSpec, threads: int | None
) -> CaseResult:
    """run_case in a spawned process, so that allocator state and cuDNN's choices do not leak between
    cases; a worker that dies (segfault, os._exit) becomes an error row."""
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    worker = spawn.Process(
        target=_worker, args=(case, metrics, timing, threads, defining_modules(case), sender), daemon=True
    )
    started = time.perf_counter()
    worker.start()
    sender.close()  # the child holds the only write end: its death ends recv with EOFError
    try:
        return receiver.recv()
    except EOFError:
        worker.join()
        row = case_row(case)
        row.update(
            status="error", error=crash_message(worker.exitcode),
            duration_s=round(time.perf_counter() - started, 3),
        )
        return CaseResult(row)
    finally:
        receiver.close()
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()
            worker.join()


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Runs every case of `suite` and returns the run directory."""
    device = resolve_device(suite.grid.device)
    settings = configure_process(device, project.threads, suite.timing)
    isolate = suite.timing.isolate_on(device.type)
    cases = expand_grid(suite, device.type)
    context = MeasureContext(timing=suite.timing, device=device)
    bandwidth = copy_bandwidth_gbs(context) if "latency" in suite.metrics else {}
    writer = RunWriter.create(
        results_root or project.results_dir,
        {
            "suite": suite.raw, "suite_fingerprint": suite.fingerprint, **environment(device, project.root),
            **settings, "isolate": isolate, **bandwidth,
        },
    )
    models = ModelCache()
    status = "interrupted"
    try:
        for index, case in enumerate(cases):
            if progress:
                progress(index, len(cases), case)
            if isolate:
                result = run_isolated(case, suite.metrics, suite.timing, project.threads)
            else:
                result = run_case(case, suite.metrics, models, context)
            result.row.update(roofline_columns(result.row, bandwidth.get("copy_bandwidth_gbs")))
            writer.append_case(result.row, result.samples, result.wall_samples)
        status = "complete"
    finally:
        writer.finish(status)
    return writer.path
