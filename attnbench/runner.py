"""Expands a suite into cases, measures each one, and appends its row as soon as it finishes."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_model
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, expand_grid
from attnbench.errors import AttnbenchError, DeviceError
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.env import environment
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


def run_case(
    case: CaseSpec, metrics: tuple[str, ...], models: ModelCache, context: MeasureContext
) -> CaseResult:
    """Measures one case; a failure inside it becomes a row with status and message, not a crash."""
    result = CaseResult(case_row(case))
    row = result.row
    started = time.perf_counter()
    try:
        built = models.get(case)
        for name in metrics:
            measured = METRICS.get(name)(case, built, context)
            row.update(measured.columns)
            if measured.samples is not None:
                result.samples = measured.samples
            if measured.sites is not None:
                result.sites = measured.sites
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


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Runs every case of `suite` and returns the run directory."""
    device = resolve_device(suite.grid.device)
    if project.threads:
        torch.set_num_threads(project.threads)
    cases = expand_grid(suite, device.type)
    writer = RunWriter.create(
        results_root or project.results_dir,
        {"suite": suite.raw, "suite_fingerprint": suite.fingerprint, **environment(device, project.root)},
    )
    context = MeasureContext(timing=suite.timing, device=device)
    models = ModelCache()
    status = "interrupted"
    try:
        for index, case in enumerate(cases):
            if progress:
                progress(index, len(cases), case)
            result = run_case(case, suite.metrics, models, context)
            if result.sites:
                writer.append_sites(result.sites)
            writer.append_case(result.row, result.samples)
        status = "complete"
    finally:
        writer.finish(status)
    return writer.path
