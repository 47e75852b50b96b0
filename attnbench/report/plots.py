"""PNG figures of one run, drawn headless with matplotlib's object API (no pyplot, no display needed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, ScalarFormatter

from attnbench.modules import BASELINE
from attnbench.registry import Registry
from attnbench.report.tables import group_title, groups, latency, memory, module_order, throughput
from attnbench.report.view import RunView

Drawn = list[tuple[str, Path]]
"""(caption, PNG file) of each figure a function drew; empty when the run lacks its data."""
FigureFn = Callable[[RunView, Path], Drawn]
FIGURES: Registry[FigureFn] = Registry("report figure")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _versus_batch(
    run: RunView, folder: Path, table: pd.DataFrame, column: str, what: str, unit: str, interval: tuple[str, str] | None
) -> Drawn:
    """One figure per backbone and setting: `column` against batch size, one line per module, log axes."""
    drawn: Drawn = []
    for key, group in groups(table):
        if group["batch_size"].nunique() < 2:
            continue  # a single batch size is a point, not a trend
        figure = Figure(figsize=(6.4, 4.2), layout="constrained")
        axes = figure.subplots()
        for attention, rows in group.groupby("attention", sort=False):
            rows = rows.sort_values("batch_size")
            errors = None
            if interval and set(interval) <= set(rows):
                low, high = rows[interval[0]], rows[interval[1]]
                errors = [(rows[column] - low).clip(lower=0), (high - rows[column]).clip(lower=0)]
            axes.errorbar(rows["batch_size"], rows[column], yerr=errors, marker="o", capsize=2, label=attention)
        batches = sorted(group["batch_size"].unique())
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(ScalarFormatter())
        axes.set_xticks(batches, labels=[str(b) for b in batches])
        axes.minorticks_off()
        axes.set_xlabel("batch size")
        axes.set_ylabel(f"{what} ({unit})")
        axes.set_title(group_title(key), fontsize=10)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        name = f"{run.run_id}-{slug(what)}-{slug(group_title(key))}.png"
        drawn.append((f"{what} vs batch size: {group_title(key)}", _save(figure, folder / name)))
    return drawn


@FIGURES.register("latency vs batch")
def latency_vs_batch(run: RunView, folder: Path) -> Drawn:
    table = latency(run.cases)
    if "latency_ms_median" not in table:
        return []
    return _versus_batch(run, folder, table, "latency_ms_median", "median latency", "ms",
                         ("latency_ms_ci_low", "latency_ms_ci_high"))


@FIGURES.register("overhead scatter")
def overhead_scatter(run: RunView, folder: Path) -> Drawn:
    """Latency overhead against FLOPs (or MACs) overhead: points far above the diagonal cost more than
    their arithmetic suggests."""
    table = run.overhead
    work = next((c for c in ("flops_overhead_pct", "macs_overhead_pct") if c in table and table[c].notna().any()), None)
    if work is None or "latency_overhead_pct" not in table:
        return []
    points = table[(table["attention"] != BASELINE) & table["latency_overhead_pct"].notna() & table[work].notna()]
    if points.empty:
        return []
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = figure.subplots()
    for key, group in groups(points):
        # Each module at the largest batch it finished, so a module that failed there still shows.
        rows = group.sort_values("batch_size").groupby("attention", sort=False).tail(1)
        axes.scatter(rows[work], rows["latency_overhead_pct"], label=group_title(key))
        for _, row in rows.iterrows():
            axes.annotate(f"{row['attention']} (b={row['batch_size']})", (row[work], row["latency_overhead_pct"]),
                          fontsize=8, xytext=(4, 3), textcoords="offset points")
    reach = max(points[work].max(), 0) * 1.2 or 1.0
    axes.plot([0, reach], [0, reach], linestyle="--", color="grey", linewidth=1, label="latency % = work %")
    quantity = "FLOPs" if work.startswith("flops") else "MACs"
    axes.set_xlabel(f"{quantity} over none (%)")
    axes.set_ylabel("latency over none (%)")
    axes.set_title("Added latency against added arithmetic", fontsize=10)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    name = f"{run.run_id}-overhead-scatter.png"
    return [(f"latency overhead vs {quantity} overhead, at the largest batch size each module finished", _save(figure, folder / name))]


@FIGURES.register("throughput bars")
def throughput_bars(run: RunView, folder: Path) -> Drawn:
    table = throughput(run.cases)
    if "throughput_ips" not in table:
        return []
    drawn: Drawn = []
    costs = dict(groups(run.overhead))
    for key, group in groups(table):
        batch = group["batch_size"].max()
        rows = group[group["batch_size"] == batch].set_index("attention")
        # Modules that did not finish at this batch keep their place, as an empty bar saying so.
        order = [m for m in module_order(costs[key]) if m in set(group["attention"])]
        order += [m for m in group["attention"].unique() if m not in order]
        values = rows["throughput_ips"].reindex(order)
        figure = Figure(figsize=(6.4, 0.5 * len(order) + 1.5), layout="constrained")
        axes = figure.subplots()
        colors = ["grey" if m == BASELINE else "tab:blue" for m in order]
        bars = axes.barh(order[::-1], values.fillna(0).iloc[::-1], color=colors[::-1])
        labels = [f"{v:.3g}" if pd.notna(v) else "did not finish" for v in values.iloc[::-1]]
        axes.bar_label(bars, labels=labels, fontsize=8, padding=2)
        axes.set_xlabel("throughput (images/s, higher is better)")
        axes.set_title(f"{group_title(key)}, batch {batch}", fontsize=10)
        axes.margins(x=0.15)
        name = f"{run.run_id}-throughput-{slug(group_title(key))}.png"
        drawn.append((f"throughput at batch {batch}: {group_title(key)}", _save(figure, folder / name)))
    return drawn


@FIGURES.register("memory vs batch")
def memory_vs_batch(run: RunView, folder: Path) -> Drawn:
    table = memory(run.cases)
    if "peak_mem_mib" not in table:
        return []
    return _versus_batch(run, folder, table, "peak_mem_mib", "peak memory", "MiB", None)


def draw_figures(run: RunView, folder: Path) -> Drawn:
    return [drawn for _, draw in FIGURES.items() for drawn in draw(run, folder)]
