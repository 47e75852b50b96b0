"""Renders run directories as Markdown: the environment, then one section per suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attnbench.errors import ResultsError
from attnbench.registry import Registry
from attnbench.report.tables import problem_cases, summary_table
from attnbench.results import Run, find_runs, read_run

Section = Callable[[Run], "str | None"]
SECTIONS: Registry[Section] = Registry("report section")
"""Extra per-run sections (formula verification, paper reproduction, ...): Markdown, or None when the
run has no data for them. Registered with `@SECTIONS.register(title)` in their own files."""

HEADERS = {
    "batch_size": "batch",
    "resolution": "res (px)",
    "params": "params",
    "params_attention": "params added",
    "macs": "MACs (G)",
    "latency_ms_median": "latency median (ms)",
    "latency_ms_iqr": "IQR (ms)",
    "latency_overhead_pct": "latency vs none (%)",
    "throughput_ips": "throughput (img/s)",
}


def fmt_number(value: object) -> str:
    """Three significant figures, thousands separated for counts."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = [HEADERS.get(column, column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt_number(value) for value in row.tolist()) + " |")
    return "\n".join(lines)


def environment_lines(run: Run) -> list[str]:
    meta = run.meta
    cuda = f", CUDA {meta['cuda']}, cuDNN {meta['cudnn']}" if meta.get("cuda") else ""
    return [
        f"- run `{run.run_id}` ({meta.get('status', '?')}), {meta.get('start_time', '?')} to "
        f"{meta.get('end_time', '?')}",
        f"- device: {meta.get('device')} ({meta.get('device_name')}), {meta.get('threads')} CPU threads",
        f"- torch {meta.get('torch')}, torchvision {meta.get('torchvision')}, "
        f"python {meta.get('python')}{cuda}",
        f"- host {meta.get('host')}, code at commit {meta.get('git_commit') or 'unknown'}",
    ]


def suite_section(run: Run) -> str:
    suite = run.meta.get("suite", {})
    lines = [f"## Suite `{run.suite_name}`", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    lines += environment_lines(run) + [""]
    cases = run.cases.copy()
    if cases.empty:
        return "\n".join(lines + ["No case was measured.", ""])
    table = summary_table(cases)
    if "macs" in table:
        table["macs"] = table["macs"] / 1e9
    if not table.empty:
        lines += [markdown_table(table), ""]
    for title, render_section in SECTIONS.items():
        body = render_section(run)
        if body:
            lines += [f"### {title}", "", body, ""]
    problems = problem_cases(cases)
    if not problems.empty:
        lines += ["### Cases that did not finish", "", markdown_table(problems), ""]
    return "\n".join(lines)


def render(runs: list[Run]) -> str:
    sections = ["# attnbench report", ""]
    sections += [suite_section(run) for run in runs]
    return "\n".join(sections).rstrip() + "\n"


def latest_per_suite(paths: list[Path]) -> list[Run]:
    latest: dict[str, Run] = {}
    for path in paths:
        run = read_run(path)
        latest[run.suite_name] = run  # paths are oldest first, so the last one wins
    return sorted(latest.values(), key=lambda run: run.suite_name)


def write_report(path: Path, out: Path | None = None) -> Path:
    """Writes the Markdown report of one run directory, or of the latest run of each suite in a root."""
    runs = latest_per_suite(find_runs(Path(path)))
    if not runs:
        raise ResultsError(f"no run directories found in {path}")
    target = Path(out) if out else Path(path) / "report.md"
    target.write_text(render(runs))
    return target
