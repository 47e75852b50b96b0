"""The table `attnbench run` prints when a run ends: one row per case, saying which case it is."""

from __future__ import annotations

import pandas as pd

from attnbench.modules import BASELINE
from attnbench.report.format import sig3, signed
from attnbench.report.tables import AXES, axis_value, constant_words, normalized, varying, with_overhead
from attnbench.terminal import Column, FittedTable
from attnbench.results import SETTING, Run

STATUS_STYLES = {"ok": "", "skipped": "dim", "oom": "yellow", "timeout": "yellow", "error": "red"}


def _in_grid_order(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases of one setting together (the report's tables), batch sizes ascending, modules as the suite gave them."""
    order = [c for c in SETTING if c != "batch_size"] + ["batch_size"]
    ranks = {c: {v: i for i, v in enumerate(cases[c].unique())} for c in order if c != "batch_size"}
    keys = cases[order].apply(lambda column: column.map(ranks[column.name]) if column.name in ranks else column)
    return cases.loc[keys.sort_values(order, kind="stable").index]


def _reasons(cases: pd.DataFrame) -> dict[str, int]:
    """Each distinct reason a case did not finish, numbered in order of appearance."""
    errors = cases.loc[(cases["status"] != "ok") & cases["error"].notna(), "error"].astype(str)
    return {reason: n for n, reason in enumerate(dict.fromkeys(e for e in errors if e), start=1)}


def _axis_column(column: str) -> Column:
    return Column(AXES[column], "number" if column in ("batch_size", "resolution") else "label")


PAIRED_NOTE = (
    "vs none %: the median over rounds of each call's latency over none's in the same round (paired), "
    "so it can differ from the ratio of the two medians beside it"
)


def run_summary(run: Run) -> FittedTable:
    """Every axis that varies in the run is a column (the others are in the title), so no two rows look
    alike; a case that did not finish shows its status and the number of its reason, each reason written
    once under the table. A gap separates the comparison groups (a `none` and its modules). Latency and
    MACs columns appear when the run measured them."""
    cases = _in_grid_order(normalized(run.cases))
    ok = with_overhead(cases) if (cases["status"] == "ok").any() else cases.iloc[0:0]
    overhead = ok.set_index("case_id")["latency_overhead_pct"] if "latency_overhead_pct" in ok else pd.Series()
    timed = cases["latency_ms_median"].notna().any()
    paired = overhead.notna().any()
    counted = cases["macs"].notna().any()
    axes = varying(cases)
    shown = [c for c in axes if c != "backbone"]
    columns = [
        *[_axis_column(c) for c in axes if c == "backbone"],
        Column("attention"),
        *[_axis_column(c) for c in shown],
        Column("status"),
        *([Column("latency ms", "number", priority=1)] if timed else []),
        *([Column("vs none %", "number", priority=1)] if paired else []),
        *([Column("MACs (G)", "number", priority=2)] if counted else []),
    ]
    reasons = _reasons(cases)
    constant = ", ".join(constant_words(cases))
    notes = [f"[{n}] {reason}" for reason, n in reasons.items()] + ([PAIRED_NOTE] if paired else [])
    shard = f" (shard {run.meta['shard']} of the grid)" if run.meta.get("shard") else ""
    table = FittedTable(
        columns, title=f"{run.suite_name}, run {run.run_id}{shard}" + (f": {constant}" if constant else ""),
        caption="\n".join(notes) or None,
    )
    groups = [tuple(row) for row in cases[axes].itertuples(index=False)]
    for index, (_, row) in enumerate(cases.iterrows()):
        cells = [
            *([row["backbone"]] if "backbone" in axes else []),
            row["attention"],
            *[axis_value(c, row[c]) for c in shown],
            row["status"] + (f" [{reasons[row['error']]}]" if row["error"] in reasons else ""),
            *([sig3(row["latency_ms_median"])] if timed else []),
            *(["" if row["attention"] == BASELINE else signed(overhead.get(row["case_id"]))] if paired else []),
            *([sig3(row["macs"] / 1e9 if pd.notna(row["macs"]) else None)] if counted else []),
        ]
        group_ends = index + 1 < len(groups) and groups[index + 1] != groups[index]
        table.add_row(*cells, style=STATUS_STYLES.get(row["status"], ""), end_section=group_ends)
    return table
