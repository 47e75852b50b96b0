"""Renders a gate comparison: a pandas frame, a rich table for the terminal, Markdown for a PR comment."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table
from rich.text import Text

from attnbench.gate import THRESHOLD_CONFIDENCE, CaseComparison, Comparison, Verdict
from attnbench.report.markdown import frame_table
from attnbench.results import Run

STYLES = {
    Verdict.REGRESSION: "bold red",
    Verdict.FAILED: "red",
    Verdict.MISSING: "yellow",
    Verdict.NEW: "cyan",
    Verdict.IMPROVEMENT: "green",
    Verdict.UNCHANGED: "dim",
}
ORDER = list(Verdict)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, spec)


def _row(case: CaseComparison, metric: str) -> dict[str, str]:
    stats = case.stats
    # The case path is what [[gate.cases]] patterns match, so showing it tells users how to write one.
    row = {"verdict": case.verdict.value, "case": case.path}
    row.update({
        f"baseline {metric} median": _number(case.baseline_median, ".4g"),
        f"current {metric} median": _number(case.current_median, ".4g"),
        "change": _number(stats.ratio - 1, "+.1%") if stats else "",
        "CI of ratio": f"[{stats.ci_low:.3f}, {stats.ci_high:.3f}]" if stats else "",
        "p": _number(stats.p_value, ".2g") if stats else "",
        "n": f"{case.n_baseline}/{case.n_current}" if stats else "",
        "gate": f"{case.thresholds.max_slowdown:.1%} / α {case.thresholds.alpha:g}",
        "note": case.note,
    })
    return row


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per case, worst verdicts first; every value already formatted for display."""
    cases = sorted(comparison.cases, key=lambda case: ORDER.index(case.verdict))
    return pd.DataFrame([_row(case, comparison.metric) for case in cases])


def headline(comparison: Comparison) -> str:
    counts = {verdict: len(comparison.of(verdict)) for verdict in Verdict}
    summary = ", ".join(f"{count} {verdict.value}" for verdict, count in counts.items() if count)
    outcome = "PASS" if comparison.passed else "FAIL"
    return f"attnbench gate: {outcome} ({summary})"


def _describe(run: Run) -> str:
    meta = run.meta
    commit = (meta.get("git_commit") or "?")[:10]
    return (
        f"`{run.run_id}` (suite {run.suite_name}, {meta.get('device_name')}, torch {meta.get('torch')}, "
        f"{meta.get('threads')} threads, commit {commit})"
    )


RULE = (
    "A regression is a case whose median {metric} is slower than the threshold with {confidence:.0%} "
    "bootstrap confidence, whose raw samples differ by a Mann-Whitney U test at p < α, and whose "
    "(1 - α) bootstrap interval of the ratio lies above 1. A case that ran in the baseline but fails "
    "now also fails the gate."
)


def comparison_markdown(comparison: Comparison) -> str:
    """Markdown for a pull-request comment: verdict, environments, warnings, the cases that changed."""
    lines = [
        f"## {headline(comparison)}",
        "",
        f"- baseline: {_describe(comparison.baseline)}",
        f"- current: {_describe(comparison.current)}",
        "",
        RULE.format(metric=comparison.metric, confidence=THRESHOLD_CONFIDENCE),
        "",
    ]
    lines += [f"> **Warning:** {warning}" for warning in comparison.warnings]
    if comparison.warnings:
        lines.append("")
    frame = comparison_frame(comparison)
    changed = frame[frame["verdict"] != Verdict.UNCHANGED.value]
    unchanged = frame[frame["verdict"] == Verdict.UNCHANGED.value]
    if not changed.empty:
        lines += [frame_table(changed), ""]
    if not unchanged.empty:
        lines += [
            f"<details><summary>{len(unchanged)} unchanged case(s)</summary>",
            "",
            frame_table(unchanged),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def comparison_table(comparison: Comparison) -> Table:
    frame = comparison_frame(comparison)
    table = Table(title=headline(comparison))
    for column in frame.columns:
        table.add_column(column, overflow="fold")  # case paths have no spaces to wrap at
    for values in frame.itertuples(index=False):
        # Text, not markup: an interval like [1.02, 1.10] is data.
        table.add_row(*(Text(value) for value in values), style=STYLES[Verdict(values[0])])
    return table
