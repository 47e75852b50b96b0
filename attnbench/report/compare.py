"""Renders the gate's comparison of two runs: pandas frames, a rich table for the terminal, Markdown for a
pull-request comment, and the two-run report. `attnbench compare` and `attnbench report A B` show the same
engine's matching and verdicts."""

from __future__ import annotations

import math

import pandas as pd

from attnbench.config import GateConfig
from attnbench.errors import GateError
from attnbench.gate import THRESHOLD_CONFIDENCE, CaseComparison, Comparison, Verdict, compare_runs
from attnbench.modules import BASELINE
from attnbench.report.format import frame_table, md_table, plural
from attnbench.report.header import recorded_settings
from attnbench.terminal import Column, FittedTable
from attnbench.results import CASE_KEY, Run

STYLES = {
    Verdict.REGRESSION: "bold red",
    Verdict.FAILED: "red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.MISSING: "yellow",
    Verdict.NEW: "cyan",
    Verdict.IMPROVEMENT: "green",
    Verdict.UNCHANGED: "dim",
    Verdict.REFERENCE: "dim",
}
ORDER = list(Verdict)
ENVIRONMENT_FIELDS = [
    "suite", "status", "start_time", "device", "device_name", "threads", "torch", "torchvision", "cuda", "git_commit",
]


def _number(value: float | None, spec: str) -> str:
    return "" if value is None or math.isnan(value) else format(value, spec)


def _ordered(comparison: Comparison) -> list[CaseComparison]:
    return sorted(comparison.cases, key=lambda case: ORDER.index(case.verdict))


def comparison_records(comparison: Comparison) -> pd.DataFrame:
    """One row per case, worst verdicts first, as numbers: for `report --format csv|json`."""
    rows = []
    for case in _ordered(comparison):
        stats = case.stats
        rows.append({
            **{column: case.key.get(column) for column in CASE_KEY},
            "verdict": case.verdict.value,
            "metric": comparison.metric,
            "baseline_median": case.baseline_median,
            "current_median": case.current_median,
            "ratio": stats.ratio if stats else None,
            "ratio_ci_low": stats.ci_low if stats else None,
            "ratio_ci_high": stats.ci_high if stats else None,
            "p_value": stats.p_value if stats else None,
            "n_baseline": case.n_baseline,
            "n_current": case.n_current,
            "max_slowdown": case.thresholds.max_slowdown,
            "alpha": case.thresholds.alpha,
            "note": case.note,
        })
    frame = pd.DataFrame(rows, columns=[*CASE_KEY, "verdict"] if not rows else None)
    for column in ("batch_size", "resolution"):
        frame[column] = pd.to_numeric(frame[column])
    frame["channels_last"] = frame["channels_last"] == "True"
    return frame


def _row(case: CaseComparison, quantity: str) -> dict[str, str]:
    stats = case.stats
    # The case path is what [[gate.cases]] patterns match, so showing it tells users how to write one.
    return {
        "verdict": case.verdict.value,
        "case": case.path,
        f"baseline {quantity} median": _number(case.baseline_median, ".4g"),
        f"current {quantity} median": _number(case.current_median, ".4g"),
        "change": _number(stats.ratio - 1, "+.1%") if stats else "",
        "CI of ratio": f"[{stats.ci_low:.3f}, {stats.ci_high:.3f}]" if stats else "",
        "p": _number(stats.p_value, ".2g") if stats else "",
        "n": f"{case.n_baseline}/{case.n_current}" if stats else "",
        "gate": f"{case.thresholds.max_slowdown:.1%} / α {case.thresholds.alpha:g}",
        "note": case.note,
    }


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """One row per case, worst verdicts first; every value already formatted for display."""
    return pd.DataFrame([_row(case, comparison.quantity) for case in _ordered(comparison)])


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
        f"{plural(meta.get('threads'), 'thread')}, commit {commit})"
    )


RULE = (
    "A regression is a case whose median {metric} is slower than the threshold with {confidence:.0%} "
    "bootstrap confidence, whose raw samples differ by a Mann-Whitney U test at p < α, and whose "
    "(1 - α) bootstrap interval of the ratio lies above 1. A case that ran in the baseline but fails "
    "now also fails the gate. A case is inconclusive when its interval still reaches a slowdown of the "
    "threshold's size: the noise hid whether it slowed down."
)


def verdict_lines(comparison: Comparison) -> list[str]:
    """Verdict, rule, warnings and the cases that changed (the unchanged folded away)."""
    lines = [RULE.format(metric=comparison.metric, confidence=THRESHOLD_CONFIDENCE), ""]
    lines += [f"> **Warning:** {warning}" for warning in comparison.warnings]
    if comparison.warnings:
        lines.append("")
    frame = comparison_frame(comparison)
    quiet = frame["verdict"].isin([Verdict.UNCHANGED.value, Verdict.REFERENCE.value])
    changed, unchanged = frame[~quiet], frame[quiet]
    if not changed.empty:
        lines += [frame_table(changed), ""]
    if not unchanged.empty:
        counts = unchanged["verdict"].value_counts()
        folded = ", ".join(f"{counts[v.value]} {v.value}" for v in (Verdict.UNCHANGED, Verdict.REFERENCE) if v.value in counts)
        lines += [f"<details><summary>{folded}</summary>", "", frame_table(unchanged), "", "</details>", ""]
    return lines


def comparison_markdown(comparison: Comparison) -> str:
    """Markdown for a pull-request comment: verdict, environments, warnings, the cases that changed."""
    lines = [
        f"## {headline(comparison)}", "",
        f"- baseline: {_describe(comparison.baseline)}",
        f"- current: {_describe(comparison.current)}", "",
    ]
    return "\n".join(lines + verdict_lines(comparison))


def _unit(metric: str) -> str:
    """How a median of `metric` reads in a narrow header: ms, wall ms, or × none (a relative comparison)."""
    if metric.endswith(f"relative to {BASELINE}"):
        return f"× {BASELINE}"
    return "ms" if metric == "latency_ms" else metric.replace("_ms", " ms").replace("_", " ")


def _terminal_columns(comparison: Comparison) -> dict[str, Column]:
    """comparison_frame's columns in the terminal: verdict and case always, then change and interval, the
    note, the medians, and the test's details as the width allows."""
    unit, quantity = _unit(comparison.metric), comparison.quantity
    return {
        "verdict": Column("verdict"),
        "case": Column("case"),
        "change": Column("change", "number", priority=1),
        "CI of ratio": Column("CI of ratio", "number", priority=2),
        f"baseline {quantity} median": Column(f"baseline {unit}", "number", priority=4),
        f"current {quantity} median": Column(f"current {unit}", "number", priority=4),
        "p": Column("p", "number", priority=5),
        "n": Column("n", "number", priority=6),
        "gate": Column("gate", priority=7),
        "note": Column("note", "clip", priority=3, min_width=16),
    }


def comparison_table(comparison: Comparison) -> FittedTable:
    """One line per case, worst verdicts first, laid out for the terminal's width (attnbench.terminal); the
    reasons of failed cases, which a narrow terminal cuts or leaves out, are written in full below."""
    frame = comparison_frame(comparison)
    columns = _terminal_columns(comparison)
    failures = [f"{case.path}: {case.note}" for case in _ordered(comparison) if case.verdict is Verdict.FAILED]
    table = FittedTable(list(columns.values()), title=headline(comparison), caption="\n".join(failures) or None)
    for row in frame.to_dict("records"):
        table.add_row(*(row[key] for key in columns), style=STYLES.get(Verdict(row["verdict"]), ""))
    return table


def environment_table(a: Run, b: Run) -> str:
    """The environments of two runs side by side; fields that differ in bold."""
    meta = {"a": {**a.meta, "suite": a.suite_name}, "b": {**b.meta, "suite": b.suite_name}}
    settings = {side: dict(recorded_settings(run.meta)) for side, run in (("a", a), ("b", b))}
    rows = [[name, str(meta["a"].get(name)), str(meta["b"].get(name))] for name in ENVIRONMENT_FIELDS]
    rows += [[name, settings["a"].get(name, ""), settings["b"].get(name, "")]
             for name in dict.fromkeys([*settings["a"], *settings["b"]])]
    rows = [[f"**{r[0]}**" if r[1] != r[2] else r[0], r[1], r[2]] for r in rows]
    return md_table(["field", "A (baseline)", "B (current)"], rows)


def render_comparison(a: Run, b: Run, gate: GateConfig = GateConfig()) -> str:
    """Two runs compared by the gate's engine: environments, then the verdict of every case."""
    lines = [
        "# attnbench comparison", "",
        f"A = run `{a.run_id}` (suite `{a.suite_name}`, the baseline), B = run `{b.run_id}` (suite "
        f"`{b.suite_name}`). Cases are matched on their case key ({', '.join(CASE_KEY)}) and judged as "
        "`attnbench compare` judges them. Fields that differ are in bold.", "",
        environment_table(a, b), "",
    ]
    try:
        comparison = compare_runs(a, b, gate, across_suites=True)  # a report shows what differs, and warns
    except GateError as error:
        return "\n".join(lines + [f"No case can be compared: {error}.", ""])
    return "\n".join(lines + [f"## {headline(comparison)}", "", *verdict_lines(comparison)])


def comparison_frame_of(a: Run, b: Run, gate: GateConfig = GateConfig()) -> pd.DataFrame:
    """The comparison table of `report --format csv|json` for two runs: like every tidy table, it starts
    with the (current) run's suite and run id, then the baseline's run id."""
    try:
        frame = comparison_records(compare_runs(a, b, gate, across_suites=True))
    except GateError:
        frame = comparison_records(Comparison(a, b, "", (), ()))
    frame.insert(0, "baseline_run_id", a.run_id)
    frame.insert(0, "run_id", b.run_id)
    frame.insert(0, "suite", b.suite_name)
    return frame
