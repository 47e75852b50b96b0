"""Expands a suite into cases, measures each one, and appends its row as soon as it finishes."""

from __future__ import annotations

import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_model
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, expand_grid, load_suite, parse_suite
from attnbench.errors import AttnbenchError, ConfigError, DeviceError, ResultsError
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.env import environment
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
    """A case's row for cases.csv, its raw samples, and its attention instances for attention_sites.csv."""

    row: dict[str, Any]
    samples: list[float] | None = None
    sites: list[dict[str, Any]] | None = None


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


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raises CaseTimeout in the case's own code once `seconds` have passed (a timer signal; main thread).

    A single long native call (one huge convolution) finishes before the exception is raised.
    """
    if not seconds or not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case exceeded max_case_seconds = {seconds:g}")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_case(
    case: CaseSpec, metrics: tuple[str, ...], models: ModelCache, context: MeasureContext
) -> CaseResult:
    """Measures one case; a failure inside it becomes a row with status and message, not a crash."""
    result = CaseResult(case_row(case))
    row = result.row
    started = time.perf_counter()
    try:
        with time_limit(context.timing.max_case_seconds):
            built = models.get(case)
            for name in metrics:
                measured = METRICS.get(name)(case, built, context)
                row.update(measured.columns)
                if measured.samples is not None:
                    result.samples = measured.samples
                if measured.sites is not None:
                    result.sites = measured.sites
        row["status"] = "ok"
    except CaseTimeout as error:
        row.update(status="timeout", error=str(error))
        result.samples = None
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


def _prepare(suite: SuiteSpec, project: ProjectConfig) -> torch.device:
    device = resolve_device(suite.grid.device)
    if project.threads:
        torch.set_num_threads(project.threads)
    return device


def _execute(
    suite: SuiteSpec,
    cases: list[CaseSpec],
    writer: RunWriter,
    device: torch.device,
    progress: ProgressCallback | None,
) -> Path:
    """Measures `cases` in order, appending each row as it finishes; marks the run complete or interrupted."""
    context = MeasureContext(timing=suite.timing, device=device)
    models = ModelCache()
    status = "interrupted"
    try:
        with interruptible():
            for index, case in enumerate(cases):
                if progress:
                    progress(index, len(cases), case)
                result = run_case(case, suite.metrics, models, context)
                if result.sites:
                    writer.append_sites(result.sites)
                writer.append_case(result.row, result.samples)
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
    device = _prepare(suite, project)
    writer = RunWriter.create(
        results_root or project.results_dir,
        {
            "suite": suite.raw,
            "suite_fingerprint": suite.fingerprint,
            "suite_source": str(suite.source.resolve()) if suite.source else None,
            "suite_file_fingerprint": suite_file_fingerprint or suite.fingerprint,
            **environment(device, project.root),
        },
    )
    return _execute(suite, expand_grid(suite, device.type), writer, device, progress)


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
    device = _prepare(suite, project)
    if device.type != run.meta.get("device", device.type).split(":")[0]:
        raise DeviceError(
            f"run {run.run_id} measured on {run.meta['device']}; it cannot be resumed on {device}"
        )
    done = set(run.cases["case_id"])
    missing = [case for case in expand_grid(suite, device.type) if case.case_id not in done]
    writer = RunWriter.reopen(Path(run_dir), run.meta)
    writer.update_meta(resumed=[*run.meta.get("resumed", []), utc_now()])
    return _execute(suite, missing, writer, device, progress)
