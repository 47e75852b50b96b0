"""The Python API: each function a thin entry to what a command does, returning modules, dicts and pandas
frames instead of printing. Errors are the typed attnbench.errors the command line turns into one line;
nothing prints unless asked (run_suite's `progress`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from attnbench import backbones
from attnbench.backbones import BuiltModel, Site
from attnbench.config import (
    DTYPES,
    AttentionEntry,
    CaseSpec,
    ProjectConfig,
    SuiteSpec,
    TimingSpec,
    attention_entry,
    filter_suite,
    load_project,
    load_suite,
    make_case,
    parse_alpha,
    parse_fraction,
    parse_suite,
)
from attnbench.config.suites import entry_placement
from attnbench.errors import ResultsError, UsageError
from attnbench.executors import EXECUTORS, ExecutorChoice
from attnbench.measure import MeasureContext
from attnbench.measure.complexity import (
    COUNTED,
    Precision,
    baseline_params,
    count_complexity,
    count_params,
    site_formula,
    site_rows,
)
from attnbench.measure.prepared import DTYPES as TORCH_DTYPES
from attnbench.measurement import Measurement, latency
from attnbench.modules import ATTENTION, BASELINE, get_attention
from attnbench.results import CASE_COLUMNS, SITE_COLUMNS, Run, find_runs, read_run
from attnbench.runner import run_suite as run_planned

PathLike = str | Path
RunLike = Run | str | Path
"""A Run, a run directory, or a folder of runs (its latest run)."""

__all__ = [
    "Measurement", "ModelInfo", "Run", "build_model", "compare_runs", "complexity", "create_attention", "latency",
    "list_attention", "load_run", "run_suite", "write_report",
]


# --- modules and models ---------------------------------------------------------------------------


def create_attention(key: str, channels: int, **options: Any) -> nn.Module:
    """One attention module for `channels` input channels, with the registry's defaults for what `options`
    leaves out; unknown keys and options are refused with close matches."""
    return get_attention(key).build(channels, **options)


def list_attention() -> pd.DataFrame:
    """Every registered module (`attnbench list attention`): key, paper, default placement and options,
    parameter formula, and where the implementation departs from the paper."""
    return pd.DataFrame([
        {
            "key": key, "paper": spec.paper.title, "venue": spec.paper.venue, "year": spec.paper.year,
            "url": spec.paper.url, "placement": spec.placement, "options": dict(spec.defaults),
            "formula": spec.formula, "notes": spec.notes,
        }
        for key, spec in ATTENTION.items()
    ])


@dataclass(frozen=True)
class ModelInfo:
    """What build_model put where; a built model carries it as `model.attnbench`."""

    backbone: str
    attention: AttentionEntry
    """The entry as a suite would hold it: key, label, the options given and all options resolved."""
    placement: str
    """The placement used in this backbone ("" for `none`)."""
    sites: tuple[Site, ...]
    """Every insertion point, with its path, stage, channels and the module placed there."""


def build_model(backbone: str, attention: str = BASELINE, placement: str | None = None, **options: Any) -> nn.Module:
    """The torchvision backbone (random weights from fixed seeds, the same in every call and run; nothing
    downloaded) with `attention` inserted at its placement, as a suite builds it; `none` is the plain
    backbone (its own squeeze-excitation removed), `native` keeps the attention it ships. The model is
    returned as an nn.Module, like timm's create_model; `model.attnbench` (a ModelInfo) records the
    backbone, entry, placement and sites, which complexity() and latency() read."""
    entry = attention_entry(attention, options, placement=placement)
    built = backbones.build_model(backbone, entry.key, entry.options_dict, placement)
    info = ModelInfo(backbone, entry, entry_placement(backbone, entry), tuple(built.sites))
    built.model.attnbench = info  # nn.Module keeps a plain attribute as it is: no submodule, no state
    return built.model


# --- counting -------------------------------------------------------------------------------------

ATTENTION_COLUMNS = ("params_attention", "macs_attention", "flops_attention", "bytes_eager_attention",
                     "bytes_min_attention", "formula_ok")
"""What only a model built by build_model can say: which work is the attention's."""


def complexity(model: nn.Module, input_shape: Sequence[int], *, dtype: str = "float32") -> dict[str, Any]:
    """The `complexity` metric of one inference forward on an (N, C, H, W) input, counted on real tensors
    up to 256 x 256 pixels and on fake tensors (which allocate nothing) above: cases.csv's columns
    (`params`, `macs`, `flops`, `bytes_eager`, `bytes_min`, ..., `uncounted_ops` as {op: calls}) and
    `sites`, one row per attention instance with its formula and counted parameters.

    For a model from build_model the `*_attention` columns and `formula_ok` split out the attention
    modules; for any other module they are None and `sites` is empty. float16/bfloat16 count the forward
    under autocast, as a suite runs it.
    """
    shape = tuple(input_shape)
    if len(shape) < 2 or not all(isinstance(size, int) and size >= 1 for size in shape):
        raise UsageError(f"complexity(): input_shape {shape!r} is not a shape; accepted: (N, C, H, W) of positive ints")
    if dtype not in DTYPES:
        raise UsageError(f"complexity(): dtype {dtype!r} is not accepted; accepted: {', '.join(DTYPES)}")
    info: ModelInfo | None = getattr(model, "attnbench", None)
    sites = list(info.sites) if info else []
    counts = count_complexity(model, sites, shape[1:], Precision(TORCH_DTYPES[dtype], autocasts=True))
    columns: dict[str, Any] = {"params": count_params(model), **counts.at_batch(shape[0])}
    columns.update(
        arithmetic_intensity=columns["flops"] / columns["bytes_eager"],
        uncounted_ops=dict(sorted(counts.uncounted.items())), formula_ok=None, counted=COUNTED,
    )
    rows: list[dict[str, Any]] = []
    if info is None:
        columns.update(dict.fromkeys(ATTENTION_COLUMNS))  # the attention's share is unknown, not zero
    else:
        context = MeasureContext(TimingSpec(), torch.device("cpu"))
        columns["params_attention"] = columns["params"] - baseline_params(info.backbone, context)
        if info.attention.key != BASELINE:
            # site_rows labels each row with a case; a call from Python is no case of a run, so this stand-in
            # names the backbone and attention only, and its case id is dropped below.
            case = make_case(info.backbone, info.attention, batch_size=shape[0], resolution=shape[-1], dtype=dtype,
                             mode="eval", device="cpu")
            rows = site_rows(case, BuiltModel(model, sites), site_formula(info.attention))
            columns["formula_ok"] = all(row["ok"] for row in rows)
    ordered = {column: columns[column] for column in CASE_COLUMNS if column in columns}  # as in cases.csv
    return {**ordered, "sites": pd.DataFrame(rows, columns=SITE_COLUMNS).drop(columns="case_id")}


# --- runs -----------------------------------------------------------------------------------------

SUITE_DICT = "run_suite(suite=...)"
"""Where errors in a suite given as a dict point to, in place of a file name."""


def _plain(value: Any) -> Any:
    """Tuples as lists, the way a TOML file holds every array."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _load_suite(suite: PathLike | Mapping[str, Any], project: ProjectConfig) -> SuiteSpec:
    if isinstance(suite, Mapping):
        # A dict has no file name to be named after, nor a file for --resume to check for changes.
        return replace(parse_suite({"name": "python", **_plain(suite)}, SUITE_DICT, project), source=None)
    return load_suite(str(suite), project)


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else list(value) if value else None


def _project(config: PathLike | None) -> ProjectConfig:
    """The given attnbench.toml, else the nearest one from the working directory, else the defaults."""
    return load_project(Path(config) if config is not None else None)


def run_suite(
    suite: PathLike | Mapping[str, Any],
    out: PathLike | None = None,
    *,
    backbone: str | Sequence[str] | None = None,
    attention: str | Sequence[str] | None = None,
    runtime: str | Sequence[str] | None = None,
    device: str | None = None,
    calibrate: bool = False,
    progress: bool | Callable[[int, int, CaseSpec], object] = False,
    workers: int | None = None,
    executor: str | None = None,
    config: PathLike | None = None,
) -> Run:
    """Runs a suite as `attnbench run` does and returns its run, read back.

    `suite` is a suite's name (built-in or the project's), a suite file, or a dict in the suite file's form
    (named `python` unless it says otherwise). `backbone`, `attention`, `runtime` and `device` narrow it
    like the command's options; `out` is the results root (default: attnbench.toml's results_dir). The project's
    threads, cuDNN and allocator settings are applied to this process, as the command applies them.
    `progress=True` shows the command's progress bar, a callable receives (done, total, case) as groups
    start and finish. `workers` and `executor` say where groups run, as `run --workers/--executor` do.
    """
    from attnbench.calibration import with_twin

    choice = _executor_choice(workers, executor)
    project = _project(config)
    loaded = _load_suite(suite, project)
    narrowed = filter_suite(loaded, _names(backbone), _names(attention), device, _names(runtime))
    if calibrate:
        narrowed = with_twin(narrowed)
    root = Path(out) if out is not None else None
    if progress is True:
        from rich.console import Console

        from attnbench.progress import progress_bar

        with progress_bar(Console(stderr=True)) as bar:
            run_dir = run_planned(narrowed, project, root, bar, loaded.fingerprint, choice)
    else:
        watcher = _CallbackProgress(progress) if progress else None
        run_dir = run_planned(narrowed, project, root, watcher, loaded.fingerprint, choice)
    return read_run(run_dir)


class _CallbackProgress:
    """A plain function as the runner's Progress."""

    def __init__(self, callback: Callable[[int, int, CaseSpec], object]):
        if not callable(callback):
            raise UsageError(f"run_suite(): progress {callback!r} is not accepted; accepted: True, False or a "
                             "function of (done, total, case)")
        self.callback = callback

    def started(self, cases: int, estimated_seconds: float) -> None:
        """Nothing: the callback hears of each group."""

    def case(self, done: int, total: int, case: CaseSpec, detail: str = "") -> None:
        self.callback(done, total, case)


def _executor_choice(workers: int | None, executor: str | None) -> ExecutorChoice:
    if executor is not None and executor not in EXECUTORS:
        raise UsageError(f"run_suite(): executor {executor!r} is not accepted; accepted: {', '.join(EXECUTORS)}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise UsageError(f"run_suite(): workers {workers!r} is not accepted; accepted: a number >= 1")
    return ExecutorChoice(executor or ("local" if workers else "process"), workers)


def load_run(path: PathLike) -> Run:
    """A run directory read back (`.meta`, `.cases`, `.samples`, `.sites`), or the latest run of a folder
    of runs; runs of older schemas are migrated on read."""
    runs = find_runs(Path(path))
    if not runs:
        raise ResultsError(f"{path} holds no run directories (folders with meta.json)")
    return read_run(runs[-1])


def _run(run: RunLike, role: str) -> Run:
    from attnbench.gate import resolve_run

    return run if isinstance(run, Run) else resolve_run(Path(run), role)


def compare_runs(
    baseline: RunLike,
    current: RunLike,
    *,
    max_slowdown: str | float | None = None,
    alpha: float | None = None,
    metric: str = "latency_ms",
    strict_env: bool = False,
    absolute: bool = False,
    force: bool = False,
    fail_on_inconclusive: bool = False,
    config: PathLike | None = None,
) -> pd.DataFrame:
    """The gate of `attnbench compare`: one row per case with its verdict, medians, ratio, interval and
    p-value, worst verdicts first. Thresholds come from attnbench.toml's [gate], `max_slowdown` ("5%" or
    0.05) and `alpha` replacing its defaults. `frame.attrs` holds `passed` (the gate's outcome), `metric`
    and the comparison's `warnings` (environments that differ, too few samples). `force` compares runs
    of different suites (their common cases) and `fail_on_inconclusive` makes an inconclusive case fail
    the gate, as `--force` and `--fail-on-inconclusive` do."""
    from attnbench import gate
    from attnbench.report.compare import comparison_records

    project = _project(config)
    defaults = project.gate.defaults
    if max_slowdown is not None:
        defaults = replace(defaults, max_slowdown=parse_fraction(max_slowdown, "max_slowdown"))
    if alpha is not None:
        defaults = replace(defaults, alpha=parse_alpha(alpha, "alpha"))
    comparison = gate.compare_runs(
        _run(baseline, "baseline"), _run(current, "current"), replace(project.gate, defaults=defaults), metric,
        strict_env, absolute=absolute, across_suites=force,
    )
    frame = comparison_records(comparison)
    frame.attrs.update(
        passed=comparison.passes(fail_on_inconclusive), metric=comparison.metric, warnings=list(comparison.warnings)
    )
    return frame


def write_report(
    runs: RunLike | Sequence[RunLike],
    out: PathLike | None = None,
    *,
    run_id: str | None = None,
    all_runs: bool = False,
    fmt: str = "md",
    config: PathLike | None = None,
) -> Path:
    """`attnbench report`: Markdown with figures (or `fmt="csv"|"json"` tables) of a run, of a results
    root's latest run per suite (`all_runs`: every run; `run_id`: one), or of two runs compared (baseline
    first). Returns the path written, by default beside the runs."""
    from attnbench.accuracy import accuracy_rows
    from attnbench.report import ReportOptions
    from attnbench.report import write_report as write

    project = _project(config)
    items = [runs] if isinstance(runs, (Run, str, Path)) else list(runs)
    paths = [item.path if isinstance(item, Run) else Path(item) for item in items]
    options = ReportOptions(project.gate, accuracy_rows(project))  # the lab's accuracies, as the command joins them
    return write(paths, Path(out) if out is not None else None, run_id, all_runs, fmt, options)
