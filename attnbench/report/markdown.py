"""A run's report as Markdown a reader can act on: what was measured, on what, what each module costs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from attnbench.registry import Registry
from attnbench.report import tables
from attnbench.report.costs import overhead_part, shares_part
from attnbench.report.format import md_table
from attnbench.report.grid import grid_parts
from attnbench.report.header import environment_lines, measured_lines, warning_lines
from attnbench.report.plots import draw_figures
from attnbench.report.view import ReportOptions, RunView
from attnbench.results import Run

Section = Callable[[RunView], "str | None"]
SECTIONS: Registry[Section] = Registry("report section")
"""Extra per-run sections (formula verification, paper reproduction, ...): Markdown, or None when the
run has no data for them. Registered with `@SECTIONS.register(title)` in their own files."""


def extra_parts(run: RunView) -> list[str]:
    lines: list[str] = []
    for title, render_section in SECTIONS.items():
        body = render_section(run)
        if body:
            lines += [f"### {title}", "", body.strip(), ""]
    return lines


def figure_parts(run: RunView, figures: Path | None, relative_to: Path) -> list[str]:
    drawn = draw_figures(run, figures) if figures else []
    if not drawn:
        return []
    lines = ["### Figures", ""]
    for caption, path in drawn:
        # Encoded: a space (a report named "my report.md") would end the link.
        lines += [f"![{caption}]({quote(path.relative_to(relative_to).as_posix())})", ""]
    return lines


def problem_parts(run: RunView) -> list[str]:
    problems = tables.problem_cases(run.cases)
    if problems.empty:
        return []
    rows = [[str(v) for v in row] for row in problems.itertuples(index=False)]
    header = ["backbone", "attention", "batch", "res (px)", "dtype", "mode", "device", "status", "reason"]
    return ["### Cases that did not finish", "", md_table(header, rows), ""]


def run_section(run: RunView, figures: Path | None, relative_to: Path) -> str:
    suite = run.meta.get("suite", {})
    lines = [f"## Suite `{run.suite_name}`, run `{run.run_id}`", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    lines += measured_lines(run) + [""] + environment_lines(run) + [""]
    warnings = warning_lines(run)
    if warnings:
        lines += warnings + [""]
    if run.cases.empty:
        return "\n".join(lines + ["No case was measured.", ""])
    lines += overhead_part(run)
    lines += shares_part(run)
    lines += grid_parts(run)
    lines += extra_parts(run)
    lines += figure_parts(run, figures, relative_to)
    lines += problem_parts(run)
    return "\n".join(lines)


def render(
    runs: list[Run], figures: Path | None = None, relative_to: Path = Path("."), options: ReportOptions | None = None
) -> str:
    """The report of `runs`; figures go to `figures` and are linked relative to `relative_to`."""
    views = [RunView(run, options) for run in runs]
    summary = [
        [f"`{run.suite_name}`", f"`{run.run_id}`", run.meta.get("status", "?"), run.meta.get("start_time", "?"),
         f"{run.meta.get('device')} ({run.meta.get('device_name')})",
         f"{int((run.cases['status'] == 'ok').sum())} / {run.total}"]  # of the grid: a stopped run has fewer rows
        for run in views
    ]
    head = [
        "# attnbench report", "",
        "What channel and spatial attention modules cost inside CNN backbones, measured by attnbench: for each "
        "run, what was measured and on what, then each module's cost relative to the plain backbone (`none`), "
        "the latency, throughput and memory over the batch x resolution grid, figures, and every case that did "
        "not finish.", "",
        md_table(["suite", "run", "status", "started (UTC)", "device", "cases ok / total"], summary), "",
    ]
    body = [run_section(run, figures, relative_to) for run in views]
    return "\n".join(head + body).rstrip() + "\n"
