"""Cost by runtime: each module's overhead over `none` in every runtime a run timed (eager, inductor,
ONNX Runtime, OpenVINO, TensorRT), side by side, with what each runtime made of the graph.

A module's overhead in a runtime is taken over the `none` of the same runtime, round by round (the paired
columns), so a runtime that speeds the convolutions up more than the gates shows the gate dearer there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from attnbench.modules import BASELINE
from attnbench.report.costs import overhead_cell
from attnbench.report.format import Cell, md_table, sig3, signed, words
from attnbench.report.markdown import SECTIONS
from attnbench.report.plots import FIGURES, Drawn, slug
from attnbench.report.tables import KEY, TABLES, measured, module_order, with_overhead
from attnbench.report.view import RunView
from attnbench.results import SETTING

ACROSS = [column for column in SETTING if column != "runtime"]
"""What one comparison across runtimes holds fixed: backbone, batch size, resolution, dtype, mode,
device, memory format."""
RUNTIME_COLUMNS = ["runtime_build_s", "max_abs_diff", "max_rel_diff", "graph_nodes", "optimized_nodes"]
OVERHEAD = ["latency_ms_median", "latency_overhead_pct", "latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct"]


def by_runtime(cases: pd.DataFrame) -> pd.DataFrame:
    """Every case (finished or not) with its status, latency overhead over its runtime's `none` and its
    runtime columns; empty unless cases of at least two runtimes measured latency."""
    if "runtime" not in cases or "latency_ms_median" not in cases:
        return pd.DataFrame(columns=KEY)
    timed = cases[pd.to_numeric(cases["latency_ms_median"], errors="coerce").notna()]
    if timed["runtime"].nunique() < 2:
        return pd.DataFrame(columns=KEY)
    finished = with_overhead(cases)
    costs = finished[["case_id", *[c for c in OVERHEAD if c in finished]]]
    frame = cases.drop(columns=[c for c in OVERHEAD if c in cases]).merge(costs, on="case_id", how="left")
    for column in RUNTIME_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


@TABLES.register("runtimes")
def runtimes_table(cases: pd.DataFrame) -> pd.DataFrame:
    """Per case of a run with several runtimes: its latency overhead over the `none` of its runtime with the
    interval, the runtime's build time, its output's difference from eager's, and its graph node counts."""
    frame = by_runtime(cases)
    columns = [*KEY, "status", *OVERHEAD, *RUNTIME_COLUMNS, "runtime_settings"]
    return frame[[c for c in columns if c in frame]].reset_index(drop=True)


def _title(key: tuple) -> str:
    point = dict(zip(ACROSS, key))
    extras = ["channels_last"] if str(point["channels_last"]) == "True" else []
    return ", ".join([f"{point['backbone']} at {int(point['resolution'])} px", f"batch {point['batch_size']}",
                      point["dtype"], point["mode"], point["device"], *extras])


def comparisons(run: RunView) -> list[tuple[tuple, pd.DataFrame, list[str]]]:
    """(fixed setting, its cases, the runtimes in run order) for every setting timed in two runtimes or more."""

    def derive() -> list:
        frame = by_runtime(run.cases)
        found = []
        for key, group in (frame.groupby(ACROSS, sort=False, dropna=False) if not frame.empty else []):
            runtimes = list(group["runtime"].unique())
            if len(runtimes) > 1:
                found.append((key, group, runtimes))
        return found

    return run.memo("runtime comparisons", derive)


def _cell(rows: pd.DataFrame, attention: str) -> Cell:
    if rows.empty:
        return ""
    row = rows.iloc[0]
    if row["status"] != "ok":
        return str(row["status"])
    if attention == BASELINE:
        return f"{sig3(row['latency_ms_median'])} ms" if pd.notna(row["latency_ms_median"]) else ""
    return overhead_cell(row) or ""


def _order(group: pd.DataFrame, runtimes: list[str]) -> list[str]:
    """`none` first, then cheapest to dearest in the first runtime (eager, usually), then the rest."""
    first = group[(group["runtime"] == runtimes[0]) & (group["status"] == "ok")]
    order = module_order(first) if not first.empty else []
    return order + [label for label in group["attention"].unique() if label not in order]


def _contrast(group: pd.DataFrame) -> str:
    """The module whose overhead differs most between two runtimes."""
    costs = group[(group["attention"] != BASELINE) & group["latency_overhead_pct"].notna()]
    spread = costs.groupby("attention")["latency_overhead_pct"].agg(lambda v: v.max() - v.min())
    if spread.empty or spread.max() <= 0:
        return ""
    module = spread.idxmax()
    rows = costs[costs["attention"] == module].sort_values("latency_overhead_pct")
    low, high = rows.iloc[0], rows.iloc[-1]
    return (f"The overheads differ most for `{module}`: {signed(low['latency_overhead_pct'])}% over `{BASELINE}` in "
            f"{low['runtime']} against {signed(high['latency_overhead_pct'])}% in {high['runtime']}.")


def _nodes(group: pd.DataFrame, runtimes: list[str], order: list[str]) -> list[str]:
    """The graph each runtime ran: `none`'s node counts, and what each module adds to them."""
    counted = [r for r in runtimes if measured(group[group["runtime"] == r], ["graph_nodes"])]
    if not counted:
        return []
    rows = []
    for attention in order:
        cells = []
        for name in counted:
            found = group[(group["runtime"] == name) & (group["attention"] == attention)]
            base = group[(group["runtime"] == name) & (group["attention"] == BASELINE)]
            cells.append(_node_cell(found, base, attention == BASELINE))
        rows.append([f"{BASELINE} (absolute)" if attention == BASELINE else attention, *cells])
    return ["Graph nodes, exported → optimized: the `none` row counts them, a module's row what it adds. ONNX "
            "runtimes: nodes of the ONNX export → of ONNX Runtime's optimized graph, OpenVINO's compiled model or "
            "TensorRT's engine layers; inductor: operations of dynamo's graphs → kernels inductor generated "
            "(library convolutions not counted). A gate that fused away adds nothing to the optimized count.", "",
            md_table(["attention", *counted], rows), ""]


def _node_cell(found: pd.DataFrame, base: pd.DataFrame, absolute: bool) -> Cell:
    if found.empty or pd.isna(found["graph_nodes"].iloc[0]):
        return ""
    nodes, optimized = found["graph_nodes"].iloc[0], found["optimized_nodes"].iloc[0]
    if absolute:
        return f"{nodes:.0f} → {optimized:.0f}" if pd.notna(optimized) else f"{nodes:.0f}"
    if base.empty or pd.isna(base["graph_nodes"].iloc[0]):
        return ""
    added = f"{nodes - base['graph_nodes'].iloc[0]:+.0f}"
    if pd.notna(optimized) and pd.notna(base["optimized_nodes"].iloc[0]):
        added += f" → {optimized - base['optimized_nodes'].iloc[0]:+.0f}"
    return added


def _agreement(group: pd.DataFrame, runtimes: list[str]) -> str:
    """How far each runtime's output was from eager's, and which cases disagreed."""
    parts = []
    for name in runtimes:
        diffs = group.loc[group["runtime"] == name, "max_rel_diff"].dropna()
        if not diffs.empty:
            parts.append(f"{name} {diffs.max():.2g}")
    if not parts:
        return ""
    text = (f"Largest difference from eager's output, relative to its largest magnitude: {words(parts)} "
            "(a case beyond its dtype's tolerance is an error row, without a latency).")
    builds = group.groupby("runtime", sort=False)["runtime_build_s"].median().dropna()
    if not builds.empty:
        text += " Median build time per case (export, optimization, compilation; never timed): " + words(
            [f"{name} {sig3(seconds)} s" for name, seconds in builds.items()]) + "."
    return text


@SECTIONS.register("Cost by runtime")
def cost_by_runtime(run: RunView) -> str | None:
    found = comparisons(run)
    if not found:
        return None
    lines = ["Each module's latency overhead over `none` in the same runtime, in % with its 95% interval (paired "
             "rounds); the `none` row gives its median latency. A runtime that speeds the convolutions up more than "
             "a gate's pooling, small layers and multiply makes the gate relatively dearer.", ""]
    for key, group, runtimes in found:
        order = _order(group, runtimes)
        rows = []
        for attention in order:
            label = f"{BASELINE} (absolute)" if attention == BASELINE else attention
            rows.append([label, *[_cell(group[(group["runtime"] == r) & (group["attention"] == attention)], attention)
                                  for r in runtimes]])
        lines += [f"#### {_title(key)}", ""]
        contrast = _contrast(group)
        if contrast:
            lines += [contrast, ""]
        lines += [md_table(["attention", *runtimes], rows), ""]
        lines += _nodes(group, runtimes, order)
        agreement = _agreement(group, runtimes)
        if agreement:
            lines += [agreement, ""]
    return "\n".join(lines)


@FIGURES.register("cost by runtime")
def cost_by_runtime_figure(run: RunView, folder: Path) -> Drawn:
    """Per setting: each module's overhead in each runtime, a dot with its interval, runtimes side by side."""
    drawn: Drawn = []
    for key, group, runtimes in comparisons(run):
        modules = [m for m in _order(group, runtimes) if m != BASELINE]
        costs = group[group["latency_overhead_pct"].notna()]
        runtimes = [name for name in runtimes if name in set(costs["runtime"])]  # skipped ones have no dots
        if not modules or costs.empty:
            continue
        figure = Figure(figsize=(6.4, 0.55 * len(modules) * max(1, len(runtimes) / 3) + 1.8), layout="constrained")
        axes = figure.subplots()
        offsets = np.linspace(-0.3, 0.3, len(runtimes)) if len(runtimes) > 1 else [0.0]
        for index, (name, offset) in enumerate(zip(runtimes, offsets)):
            rows = costs[costs["runtime"] == name].set_index("attention").reindex(modules)
            y = np.arange(len(modules)) + offset
            value = rows["latency_overhead_pct"]
            low = (value - rows["latency_overhead_ci_low_pct"]).clip(lower=0).fillna(0)
            high = (rows["latency_overhead_ci_high_pct"] - value).clip(lower=0).fillna(0)
            base = group.loc[(group["runtime"] == name) & (group["attention"] == BASELINE), "latency_ms_median"]
            label = f"{name} ({BASELINE}: {sig3(base.iloc[0])} ms)" if not base.dropna().empty else name
            axes.errorbar(value, y, xerr=[low, high], fmt="o", color=f"C{index}", capsize=3, markersize=6, label=label)
        axes.axvline(0, color="grey", linewidth=0.8)
        axes.set_yticks(np.arange(len(modules)), labels=modules)
        axes.invert_yaxis()  # cheapest (in the first runtime) on top
        axes.set_xlabel(f"latency over {BASELINE} of the same runtime (%), 95% interval")
        axes.set_title(f"Cost by runtime: {_title(key)}", fontsize=10)
        axes.grid(True, axis="x", alpha=0.3)
        figure.legend(fontsize=8, loc="outside lower center", ncols=min(3, len(runtimes)))
        path = folder / f"{run.run_id}-runtimes-{slug(_title(key))}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        drawn.append((f"overhead over {BASELINE} by runtime: {_title(key)}", path))
    return drawn
