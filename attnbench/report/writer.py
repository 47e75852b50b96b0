"""Which runs a report covers, and the files it writes: Markdown with figures, or the tables as CSV/JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attnbench.errors import ResultsError, UnknownNameError
from attnbench.outputs import prepare_output
from attnbench.registry import unknown_name_message
from attnbench.report.compare import comparison_frame_of, render_comparison
from attnbench.report.markdown import render
from attnbench.report.tables import TABLES
from attnbench.report.view import ReportOptions
from attnbench.results import Run, find_runs, is_run_dir, read_run

# Importing the section files fills the SECTIONS (and FIGURES) registries that render() walks.
from attnbench.report import accuracy_section, formula, paper, profile_section, runtime_section  # noqa: F401


@dataclass(frozen=True)
class Report:
    """The runs of one report; `baseline` is set when two runs are compared (A = baseline, B = runs[0])."""

    runs: tuple[Run, ...]
    folder: Path
    """Where the report goes unless --out says otherwise."""
    baseline: Run | None = None
    options: ReportOptions = field(default_factory=ReportOptions)

    @property
    def stem(self) -> str:
        return f"compare-{self.baseline.run_id}" if self.baseline else "report"

    def tables(self) -> dict[str, pd.DataFrame]:
        """Tidy tables, each run's rows prefixed with its suite and run id."""
        if self.baseline:
            return {"comparison": comparison_frame_of(self.baseline, self.runs[0], self.options.gate)}
        out = {}
        for name, table in TABLES.items():
            frames = [table(run.cases).assign(suite=run.suite_name, run_id=run.run_id) for run in self.runs]
            frame = pd.concat([f for f in frames if not f.empty] or frames, ignore_index=True)
            out[name] = frame[["suite", "run_id", *[c for c in frame.columns if c not in ("suite", "run_id")]]]
        return out


def select_runs(path: Path, run_id: str | None = None, all_runs: bool = False) -> list[Run]:
    """A run directory, or from a results root the latest run of each suite, one run by id, or all runs."""
    paths = find_runs(path)
    if not paths:
        raise ResultsError(f"{path} holds no run directories (folders with meta.json)")
    if run_id:
        matches = [p for p in paths if p.name.startswith(run_id)]
        if len(matches) != 1:
            problem = "matches several runs" if matches else "matches no run"
            raise ResultsError(f"--run {run_id!r} {problem} in {path}; accepted: {', '.join(p.name for p in paths)}")
        return [read_run(matches[0])]
    runs = [read_run(p) for p in paths]
    if all_runs:
        return sorted(runs, key=lambda run: (run.suite_name, run.run_id))
    latest = {run.suite_name: run for run in runs}  # paths are oldest first, so the last one wins
    return sorted(latest.values(), key=lambda run: run.suite_name)


def build_report(
    paths: list[Path], run_id: str | None = None, all_runs: bool = False, options: ReportOptions | None = None
) -> Report:
    options = options or ReportOptions()
    paths = [Path(p) for p in paths]
    if len(paths) == 2:
        if run_id or all_runs:
            raise ResultsError("--run and --all choose runs in one results root; a comparison takes two run directories")
        for path in paths:
            if not is_run_dir(path):
                read_run(path)  # raises the precise reason: missing, or no meta.json
        a, b = (read_run(p) for p in paths)
        if a.run_id == b.run_id:
            raise ResultsError(f"report A B: both are run {a.run_id}; a comparison takes two different runs")
        return Report((b,), paths[1], baseline=a, options=options)
    if len(paths) != 1:
        raise ResultsError(f"report takes one run directory or results root, or two run directories; got {len(paths)}")
    folder = paths[0] if paths[0].is_dir() else paths[0].parent
    return Report(tuple(select_runs(paths[0], run_id, all_runs)), folder, options=options)


Writer = Callable[[Report, Path], None]


@dataclass(frozen=True)
class Format:
    suffix: str
    """Appended to the report's stem for the default output path ("-tables" names a folder)."""
    write: Writer




def _write_markdown(report: Report, target: Path) -> None:
    if report.baseline:
        target.write_text(render_comparison(report.baseline, report.runs[0], report.options.gate))
        return
    figures = target.with_name(f"{target.stem}-figures")
    for old in figures.glob("*.png"):  # figures of an earlier report of other runs would linger
        old.unlink()
    target.write_text(render(list(report.runs), figures, target.parent, report.options))


def _write_csv(report: Report, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, frame in report.tables().items():
        frame.to_csv(target / f"{name}.csv", index=False)


def _write_json(report: Report, target: Path) -> None:
    runs = report.runs if not report.baseline else (report.baseline, *report.runs)
    document = {
        "runs": [{**run.meta, "suite": run.suite_name} for run in runs],  # the suite's name, not its whole spec
        "tables": {name: json.loads(frame.to_json(orient="records")) for name, frame in report.tables().items()},
    }
    target.write_text(json.dumps(document, indent=1) + "\n")


FORMATS = {"md": Format(".md", _write_markdown), "csv": Format("-tables", _write_csv), "json": Format(".json", _write_json)}


def write_report(
    paths: list[Path] | Path,
    out: Path | None = None,
    run_id: str | None = None,
    all_runs: bool = False,
    fmt: str = "md",
    options: ReportOptions | None = None,
) -> Path:
    """Writes the report of a run directory or results root (or two runs compared); returns its path."""
    check_output(out, fmt)
    report = build_report(paths if isinstance(paths, list) else [paths], run_id, all_runs, options)
    return save_report(report, out, fmt)


def check_output(out: Path | None, fmt: str) -> None:
    """Refuses an unknown format or an `out` that cannot be written, and creates its missing folders:
    before any run is read."""
    if fmt not in FORMATS:
        raise UnknownNameError(unknown_name_message("report format", fmt, list(FORMATS)))
    if out is not None:
        prepare_output(Path(out), "--out", folder=fmt == "csv")


def save_report(report: Report, out: Path | None, fmt: str) -> Path:
    """Writes a built report to `out` (checked by check_output), or beside its runs; returns the path."""
    format_ = FORMATS[fmt]
    target = Path(out) if out else prepare_output(report.folder / f"{report.stem}{format_.suffix}", "report",
                                                  folder=fmt == "csv")
    try:
        format_.write(report, target)
    except OSError as error:
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(target) else ""
        raise ResultsError(f"cannot write the report {target}{where}: {error.strerror}") from None
    return target
