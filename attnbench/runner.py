"""Expands a suite into cases, measures each one, and appends its row as soon as it finishes."""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_model, get_backbone
from attnbench.config import (
    CaseSpec, ProjectConfig, SuiteSpec, TimingSpec, expand_grid, load_suite, parse_suite,
)
from attnbench.errors import AttnbenchError, ConfigError, DeviceError, ResultsError
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.allocator import configure_allocator
from attnbench.measure.bandwidth import copy_bandwidth_gbs, roofline_columns
from attnbench.measure.env import environment
from attnbench.measure.timing import PreparedStep, prepare_network, time_interleaved, unsupported
from attnbench.modules import BASELINE, NATIVE, get_attention
from attnbench.results import RunWriter, read_run, utc_now


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
    """A case's row for cases.csv, its raw samples for samples.csv, its attention instances for
    attention_sites.csv."""

    row: dict[str, Any]
    samples: list[float] | None = None
    wall_samples: list[float] | None = None
    sites: list[dict[str, Any]] | None = None


ProgressCallback = Callable[[int, int, CaseSpec], None]


class ModelCache:
    """Builds each (backbone, attention) model once; cases of that pair follow each other in the grid."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._built: BuiltModel | None = None

    @staticmethod
    def key_of(case: CaseSpec) -> tuple:
        entry = case.attention
        return (case.backbone, entry.key, entry.options, entry.placement)

    def put(self, case: CaseSpec, built: BuiltModel) -> None:
        """Hands over a model built elsewhere (for interleaved timing), so it is not built twice."""
        self._key, self._built = self.key_of(case), built

    def get(self, case: CaseSpec) -> BuiltModel:
        entry = case.attention
        key = self.key_of(case)
        if key != self._key:
            self._built = None  # free the previous model before building the next
            self._built = build_model(case.backbone, entry.key, entry.options_dict, entry.placement)
            self._key = key
        return self._built


class CaseTimeout(Exception):
    """A case ran past max_case_seconds."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the current case is dropped whole and the run is marked interrupted.

    A BaseException, like KeyboardInterrupt, so that a module's `except Exception` cannot swallow it.
    """

    def __init__(self, signum: int, run_dir: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM is handled like Ctrl-C, so a killed job leaves a consistent run directory behind."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


TIMEOUT_REFIRE_S = 0.5


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raises CaseTimeout in the case's own code once `seconds` have passed (a timer signal; main thread).

    A single long native call (one huge convolution) finishes before the exception is raised. The timer
    fires again every TIMEOUT_REFIRE_S until the case ends, because an exception raised where Python
    ignores exceptions (a weakref callback, a __del__) would otherwise be lost.
    """
    if not seconds or not _in_main_thread():
        yield
        return
    state = {"active": True}

    def handler(signum: int, frame: object) -> None:
        if state["active"]:
            raise CaseTimeout(f"case exceeded max_case_seconds = {seconds:g}")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds, TIMEOUT_REFIRE_S)
    try:
        yield
    finally:
        state["active"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        with time_limit(context.timing.max_case_seconds):
            built = models.get(case)
            for name in metrics:
                measured = METRICS.get(name)(case, built, context)
                row.update(measured.columns)
                if measured.samples is not None:
                    result.samples, result.wall_samples = measured.samples, measured.wall_samples
                if measured.sites is not None:
                    result.sites = measured.sites
        row["status"] = "ok"
    except CaseTimeout as error:
        row.update(status="timeout", error=str(error))
        result.samples = result.wall_samples = None
    except DeviceError as error:
        row.update(status="skipped", error=str(error))
    except torch.cuda.OutOfMemoryError as error:
        # No retry with a smaller batch: that would read as a fake speed-up or regression.
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
    return {"cudnn_benchmark": timing.cudnn_benchmark, "allocator": configure_allocator()}


# --- isolation: each case in a fresh process ------------------------------------------------------

WORKER_START_GRACE_S = 120.0
"""Beyond max_case_seconds, time a worker may take to start (imports) before the parent kills it."""


def defining_modules(case: CaseSpec) -> list[str]:
    """Modules a fresh process must import to find the case's attention class and backbone builder
    (registered outside attnbench, e.g. by a plugin or a test)."""
    defined = [get_backbone(case.backbone).build.__module__]
    if case.attention.key not in (BASELINE, NATIVE):
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
    cases. A worker that dies (segfault, os._exit) becomes an error row; one that hangs past
    max_case_seconds (plus start-up) is killed and becomes a timeout row."""
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    worker = spawn.Process(
        target=_worker, args=(case, metrics, timing, threads, defining_modules(case), sender), daemon=True
    )
    started = time.perf_counter()
    worker.start()
    sender.close()  # the child holds the only write end: its death ends recv with EOFError
    limit = timing.max_case_seconds + WORKER_START_GRACE_S if timing.max_case_seconds else None
    row = case_row(case)
    try:
        if receiver.poll(limit):
            return receiver.recv()
        row.update(
            status="timeout", error=f"case exceeded max_case_seconds = {timing.max_case_seconds:g}; worker killed"
        )
    except EOFError:
        worker.join()
        row.update(status="error", error=crash_message(worker.exitcode))
    finally:
        receiver.close()
        worker.join(timeout=5)
        if worker.is_alive():
            worker.kill()
            worker.join()
    row["duration_s"] = round(time.perf_counter() - started, 3)
    return CaseResult(row)


def _prepare(suite: SuiteSpec, project: ProjectConfig) -> tuple[torch.device, dict[str, Any]]:
    """The device, with this process configured for it; the settings for meta.json."""
    device = resolve_device(suite.grid.device)
    settings = configure_process(device, project.threads, suite.timing)
    return device, {**settings, "isolate": suite.timing.isolate_on(device.type)}


def comparison_groups(cases: list[CaseSpec]) -> list[list[CaseSpec]]:
    """Cases that differ only in their attention entry, in the order of their first case."""
    groups: dict[tuple, list[CaseSpec]] = {}
    for case in cases:
        setting = tuple(value for name, value in case.key.items() if name != "attention")
        groups.setdefault(setting, []).append(case)
    return list(groups.values())


def pretime_group(group: list[CaseSpec], context: MeasureContext) -> dict[str, BuiltModel]:
    """Builds the group's models and times them in interleaved rounds into context.pretimed.

    Returns the built models, to be reused by the case's other metrics. A case that fails here gets no
    pretimed entry: run_case then measures it alone, and records why it fails.
    """
    built: dict[str, BuiltModel] = {}
    prepared: dict[str, PreparedStep] = {}
    for case in group:
        if unsupported(case, context.timing):
            continue
        entry = case.attention
        try:
            with time_limit(context.timing.max_case_seconds):
                model = build_model(case.backbone, entry.key, entry.options_dict, entry.placement)
                prepared[case.case_id] = prepare_network(case, model, context)
        except Exception:  # recorded when run_case meets it again
            continue
        built[case.case_id] = model
    if len(prepared) > 1:
        try:
            with time_limit(context.timing.max_case_seconds * len(prepared)):
                context.pretimed.update(time_interleaved(prepared, context))
        except Exception:  # each case is then timed alone, and a failure recorded as its row
            context.pretimed.clear()
    return built


def _execute(
    suite: SuiteSpec,
    cases: list[CaseSpec],
    writer: RunWriter,
    device: torch.device,
    progress: ProgressCallback | None,
    threads: int | None,
) -> Path:
    """Measures `cases`, appending each row as it finishes; marks the run complete or interrupted.

    In one process, cases that differ only in their attention entry are timed together in interleaved
    rounds (TimingSpec.rounds); isolated cases run one per process, in grid order.
    """
    context = MeasureContext(timing=suite.timing, device=device)
    models = ModelCache()
    copy_gbs = writer.meta.get("copy_bandwidth_gbs")
    isolate = writer.meta["isolate"]
    interleave = not isolate and suite.timing.rounds > 1 and "latency" in suite.metrics
    groups = comparison_groups(cases) if interleave else [[case] for case in cases]
    status = "interrupted"
    done = 0
    try:
        with interruptible():
            for group in groups:
                if progress:
                    progress(done, len(cases), group[0])
                built = pretime_group(group, context) if interleave and len(group) > 1 else {}
                for case in group:
                    if progress:
                        progress(done, len(cases), case)
                    if isolate:
                        result = run_isolated(case, suite.metrics, suite.timing, threads)
                    else:
                        if case.case_id in built:
                            models.put(case, built.pop(case.case_id))
                        result = run_case(case, suite.metrics, models, context)
                    result.row.update(roofline_columns(result.row, copy_gbs))
                    if result.sites:
                        writer.append_sites(result.sites)
                    writer.append_case(result.row, result.samples, result.wall_samples)
                    done += 1
                context.pretimed.clear()
        status = "complete"
    except Interrupted as interruption:
        interruption.run_dir = writer.path
        raise
    finally:
        writer.finish(status)
    return writer.path


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: ProgressCallback | None = None,
    suite_file_fingerprint: str | None = None,
) -> Path:
    """Runs every case of `suite` and returns the run directory.

    `suite_file_fingerprint` identifies the suite file as loaded (before --backbone/--attention filters),
    so that a resume can tell whether the file changed since.
    """
    device, settings = _prepare(suite, project)
    context = MeasureContext(timing=suite.timing, device=device)
    bandwidth = copy_bandwidth_gbs(context) if "latency" in suite.metrics else {}
    writer = RunWriter.create(
        results_root or project.results_dir,
        {
            "suite": suite.raw,
            "suite_fingerprint": suite.fingerprint,
            "suite_source": str(suite.source.resolve()) if suite.source else None,
            "suite_file_fingerprint": suite_file_fingerprint or suite.fingerprint,
            **environment(device, project.root),
            **settings,
            **bandwidth,
        },
    )
    return _execute(suite, expand_grid(suite, device.type), writer, device, progress, project.threads)


def resume_run(
    run_dir: Path, project: ProjectConfig, force: bool = False, progress: ProgressCallback | None = None
) -> Path:
    """Runs the cases of an interrupted run that have no row yet, in the same run directory."""
    run = read_run(run_dir)
    meta_path = Path(run_dir) / "meta.json"
    if "suite" not in run.meta:
        raise ResultsError(f"{meta_path}: no recorded suite to resume")
    suite = parse_suite(run.meta["suite"], meta_path, project)
    source = run.meta.get("suite_source")
    if source and Path(source).is_file() and not force:
        current = load_suite(source, project)
        if current.fingerprint != run.meta.get("suite_file_fingerprint"):
            raise ConfigError(
                f"suite file {source} changed since run {run.run_id} started; "
                "use --force to finish the recorded grid anyway, or start a new run"
            )
    device, _ = _prepare(suite, project)
    if device.type != run.meta.get("device", device.type).split(":")[0]:
        raise DeviceError(
            f"run {run.run_id} measured on {run.meta['device']}; it cannot be resumed on {device}"
        )
    done = set(run.cases["case_id"])
    missing = [case for case in expand_grid(suite, device.type) if case.case_id not in done]
    writer = RunWriter.reopen(Path(run_dir), run.meta)
    writer.update_meta(resumed=[*run.meta.get("resumed", []), utc_now()])
    return _execute(suite, missing, writer, device, progress, project.threads)
