"""PNG figures of one run, drawn headless with matplotlib's object API (no pyplot, no display needed).

One figure per question, each readable on its own: what each module costs (per setting), how time and
memory grow with batch size (per setting), and whether FLOPs predict latency (all settings, one panel
each). Every figure names its setting; points are told apart by legend entries, never by text laid over
each other; axes get enough labelled ticks to read a value off them.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator

from attnbench.modules import BASELINE
from attnbench.registry import Registry
from attnbench.report.tables import group_title, groups, latency, memory, module_order, overhead_interval
from attnbench.report.view import RunView

Drawn = list[tuple[str, Path]]
"""(caption, PNG file) of each figure a function drew; empty when the run lacks its data."""
FigureFn = Callable[[RunView, Path], Drawn]
FIGURES: Registry[FigureFn] = Registry("report figure")

MARKERS = "osD^vP*Xh<>p"
COINCIDE = 0.01
"""Lines within this fraction of each other at every batch size are drawn once, with all their names."""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


class Styles:
    """One color and marker per module, the same in every figure of a run; `none` is black."""

    def __init__(self, labels: Iterable[str]):
        modules = [label for label in dict.fromkeys(labels) if label != BASELINE]
        palette = colormaps["tab10" if len(modules) <= 10 else "tab20"]
        self._styles = {BASELINE: {"color": "black", "marker": "o"}}
        for index, label in enumerate(modules):
            self._styles[label] = {"color": palette(index % palette.N), "marker": MARKERS[(index + 1) % len(MARKERS)]}

    def __getitem__(self, label: str) -> dict:
        return self._styles.get(label, {"color": "grey", "marker": "o"})


def _plain(value: float, _position: object = None) -> str:
    """A tick label as the number it is: 8, 12.5, 0.04, 2000 (not 8.00, 1.25e1)."""
    return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.1e}"


def value_axis(axes: Axes, which: str, values: Iterable[float]) -> None:
    """Linear with about six labelled ticks when the values span less than a factor of 10; otherwise log
    with 1-2-5 ticks in every decade, labelled as plain numbers (12.5, not 1.25e1)."""
    axis = axes.yaxis if which == "y" else axes.xaxis
    positive = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if positive and max(positive) / min(positive) >= 10:
        (axes.set_yscale if which == "y" else axes.set_xscale)("log")
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_minor_locator(LogLocator(subs="auto"))
        axis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    else:
        axis.set_major_locator(MaxNLocator(nbins=6))
        axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(_plain))


def batch_axis(axes: Axes, batches: list[int]) -> None:
    """Batch sizes as the x ticks, on a log2 scale when they span a factor of 8 or more."""
    if len(batches) > 1 and max(batches) / min(batches) >= 8:
        axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(MaxNLocator(nbins="auto") if len(batches) > 12 else FixedLocator(batches))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def coinciding(series: dict[str, pd.Series]) -> list[list[str]]:
    """Labels grouped where their values agree within COINCIDE at every batch size (same batch sizes)."""
    clusters: list[list[str]] = []
    for label, values in series.items():
        for cluster in clusters:
            first = series[cluster[0]]
            if values.index.equals(first.index) and ((values - first).abs() <= COINCIDE * first.abs()).all():
                cluster.append(label)
                break
        else:
            clusters.append([label])
    return clusters


DODGE = 0.02
"""How far apart (in log2 of the batch size) the lines of the batch figure are drawn."""


def _versus_batch(axes: Axes, table: pd.DataFrame, column: str, interval: tuple[str, str] | None,
                  styles: Styles) -> None:
    """`column` against batch size, one line per module; coinciding lines drawn once, named together."""
    series = {label: rows.set_index("batch_size")[column].sort_index()
              for label, rows in table.groupby("attention", sort=False)}
    clusters = coinciding(series)
    for k, cluster in enumerate(clusters):
        rows = table[table["attention"] == cluster[0]].sort_values("batch_size")
        # Each line a little to the side of the others (a factor, so it looks alike on a log axis), so
        # that intervals at one batch size do not hide each other; the ticks give the batch sizes.
        dodged = rows["batch_size"] * 2 ** ((k - (len(clusters) - 1) / 2) * DODGE)
        errors = None
        if interval and set(interval) <= set(rows) and rows[list(interval)].notna().all().all():
            errors = [(rows[column] - rows[interval[0]]).clip(lower=0), (rows[interval[1]] - rows[column]).clip(lower=0)]
        label = cluster[0] if len(cluster) == 1 else textwrap.fill(f"{', '.join(cluster)} (within {COINCIDE:.0%})", 36)
        axes.errorbar(dodged, rows[column], yerr=errors, capsize=2, label=label, markersize=6,
                      **styles[cluster[0]])
    batch_axis(axes, sorted(table["batch_size"].unique()))
    value_axis(axes, "y", pd.concat([table[column], *(table[c] for c in interval or () if c in table)]))
    axes.set_xlabel("batch size")
    axes.grid(True, which="major", alpha=0.3)
    axes.grid(True, which="minor", alpha=0.1)


def _legend_below(panel, axes: Axes) -> None:
    """The legend of `axes` under its panel (a subfigure), where it covers no line."""
    handles, labels = axes.get_legend_handles_labels()
    columns = 1 if any(len(label) > 24 for label in labels) else 2
    panel.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=columns)


def _batch_styles(batches: list[int]) -> dict[int, dict]:
    """Batch sizes from light to dark (the larger, the darker), each with its own marker."""
    palette = colormaps["viridis"]
    spread = max(len(batches) - 1, 1)
    return {batch: {"color": palette(0.8 * (1 - i / spread) if len(batches) > 1 else 0.3),
                    "marker": MARKERS[i % len(MARKERS)]} for i, batch in enumerate(batches)}


def _one(mode: str) -> str:
    return "training step" if mode == "train" else "forward"


def cost_plot(run: RunView, key: tuple, group: pd.DataFrame) -> Figure | None:
    """What each module costs in one setting: its latency over `none` at each batch size, with the 95%
    interval (tables.overhead_interval), cheapest on top; a batch size it did not finish is in its label."""
    modules = [m for m in module_order(group) if m != BASELINE]
    if not modules or group.loc[group["attention"] != BASELINE, "latency_overhead_pct"].isna().all():
        return None
    batches = sorted(dict(groups(run.normalized))[key]["batch_size"].unique())  # finished or not
    styles = _batch_styles(sorted(run.cases["batch_size"].unique()))  # the same colors in every setting
    figure = Figure(figsize=(6.4, 0.42 * len(modules) * max(1, len(batches) / 2) + 1.8), layout="constrained")
    axes = figure.subplots()
    base = group[group["attention"] == BASELINE].set_index("batch_size")
    for k, batch in enumerate(batches):
        offset = (k - (len(batches) - 1) / 2) * min(0.6 / len(batches), 0.25)  # side by side, not on top
        for row, module in enumerate(modules):
            case = group[(group["attention"] == module) & (group["batch_size"] == batch)]
            if case.empty or pd.isna(case["latency_overhead_pct"].iloc[0]) or batch not in base.index:
                continue
            case = case.iloc[0]
            x = case["latency_overhead_pct"]
            bounds = overhead_interval(case, base.loc[batch])
            xerr = [[max(x - bounds[0], 0)], [max(bounds[1] - x, 0)]] if bounds else None
            axes.errorbar(x, row + offset, xerr=xerr, capsize=2, linestyle="none", markersize=6,
                          label=f"batch {batch}", **styles[batch])
    status = run.statuses
    labels = []
    for module in modules:
        failed = [f"b={b}: {status[(key, module, b)]}" for b in batches if (key, module, b) in status]
        labels.append(module + (f"\n({', '.join(failed)})" if failed else ""))
    axes.set_yticks(range(len(modules)), labels=labels)
    axes.set_ylim(len(modules) - 0.5, -0.5)  # cheapest on top
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.xaxis.set_major_locator(MaxNLocator(nbins=8))
    axes.xaxis.set_major_formatter(FuncFormatter(_plain))
    axes.margins(x=0.2)
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_xlabel(f"latency of one {_one(key[3])} over none (%), 95% interval")
    title = f"What each module costs: {group_title(key)}"
    lost = [f"b={b}: {status[(key, BASELINE, b)]}" for b in batches if (key, BASELINE, b) in status]
    if lost:
        title += f"\n(no overheads where none did not finish: {', '.join(lost)})"
    axes.set_title(title, fontsize=10)
    handles, names = axes.get_legend_handles_labels()
    once = dict(zip(names, handles))  # one entry per batch size
    axes.legend(once.values(), once.keys(), fontsize=8, loc="best")
    return figure


@FIGURES.register("what each module costs")
def cost_figures(run: RunView, folder: Path) -> Drawn:
    table = run.overhead
    if "latency_overhead_pct" not in table:
        return []
    drawn: Drawn = []
    for key, group in groups(table):
        figure = cost_plot(run, key, group)
        if figure is not None:
            path = _save(figure, folder / f"{run.run_id}-cost-{slug(group_title(key))}.png")
            drawn.append((f"latency over none per module and batch size: {group_title(key)}", path))
    return drawn


GROWTH = (("latency_ms_median", ("latency_ms_ci_low", "latency_ms_ci_high"), "median latency"),
          ("peak_mem_mib", None, "peak memory"))
"""The panels of the batch figure: measured column, its interval, what it is."""


def batch_plot(key: tuple, panels: list[tuple[pd.DataFrame, str, tuple[str, str] | None]], styles: Styles) -> Figure:
    """How latency and peak memory grow with batch size in one setting, side by side, each with its legend
    under it."""
    entries = max(table["attention"].nunique() for table, _, _ in panels)
    figure = Figure(figsize=(5.2 * len(panels), 4.2 + 0.17 * math.ceil(entries / 2)), layout="constrained")
    for panel, (table, column, interval) in zip(figure.subfigures(1, len(panels), squeeze=False)[0], panels):
        axes = panel.subplots()
        _versus_batch(axes, table, column, interval, styles)
        if column == "latency_ms_median":
            axes.set_ylabel(f"median latency of one {_one(key[3])} (ms)")
            axes.set_title("latency, with 95% interval of the median", fontsize=9)
        else:
            axes.set_ylabel("peak memory of one step (MiB)")
            axes.set_title("peak memory", fontsize=9)
        _legend_below(panel, axes)
    figure.suptitle(f"How it grows with batch size: {group_title(key)}", fontsize=10)
    return figure


@FIGURES.register("how it grows with batch")
def batch_figures(run: RunView, folder: Path) -> Drawn:
    tables = {"latency_ms_median": latency(run.cases), "peak_mem_mib": memory(run.cases)}
    by_setting: dict[tuple, list] = {}
    for column, interval, what in GROWTH:
        if column not in tables[column]:
            continue
        for key, group in groups(tables[column]):
            if group["batch_size"].nunique() > 1:  # a single batch size is a point, not a trend
                by_setting.setdefault(key, []).append((group, column, interval, what))
    styles = Styles(run.cases["attention"])
    drawn: Drawn = []
    for key, shown in by_setting.items():
        figure = batch_plot(key, [(group, column, interval) for group, column, interval, _ in shown], styles)
        path = _save(figure, folder / f"{run.run_id}-batch-{slug(group_title(key))}.png")
        what = " and ".join(what for *_, what in shown)
        drawn.append((f"{what} vs batch size: {group_title(key)}", path))
    return drawn


def work_column(table: pd.DataFrame) -> str | None:
    """The arithmetic a run counted: FLOPs (which see the gates), else MACs."""
    return next((c for c in ("flops_overhead_pct", "macs_overhead_pct") if c in table and table[c].notna().any()), None)


def flops_plot(run: RunView) -> Figure | None:
    """Latency overhead against FLOPs (or MACs) overhead, one panel per setting at one batch size: the one
    where most modules finished (the largest of those), so that every point of a panel shares a setting and
    a module that failed at the largest batch still shows. Points far above the diagonal cost more than
    their arithmetic suggests."""
    table = run.overhead
    work = work_column(table)
    if work is None or "latency_overhead_pct" not in table:
        return None
    settings = []
    for key, group in groups(table):
        timed = group[group["latency_overhead_pct"].notna() & group[work].notna() & (group["attention"] != BASELINE)]
        if not timed.empty:
            counts = timed.groupby("batch_size")["attention"].nunique()
            batch = max(counts.index, key=lambda b: (counts[b], b))
            settings.append((key, group, batch, timed[timed["batch_size"] == batch]))
    if not settings:
        return None
    quantity = "FLOPs" if work.startswith("flops") else "MACs"
    styles = Styles(table["attention"])
    columns = min(2, len(settings))
    rows = math.ceil(len(settings) / columns)
    figure = Figure(figsize=(max(6.4, 5.4 * columns), 4.0 * rows + 0.9), layout="constrained")
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, (key, group, batch, points) in zip(panels, settings):
        for _, point in points.iterrows():
            axes.plot(point[work], point["latency_overhead_pct"], linestyle="none", markersize=8, alpha=0.85,
                      label=point["attention"], **styles[point["attention"]])
        reach = max(points[work].max(), 0) * 1.1 or 1.0
        axes.plot([0, reach], [0, reach], linestyle="--", color="grey", linewidth=1, label=f"latency % = {quantity} %")
        axes.axhline(0, color="grey", linewidth=0.6)
        title = f"{group_title(key)}, batch {batch}"
        missing = [f"{m} ({run.statuses.get((key, m, batch), 'not run')})" for m in module_order(group)
                   if m != BASELINE and m not in set(points["attention"])]
        if missing:
            title += "\n" + textwrap.fill(f"not at batch {batch}: {', '.join(missing)}", 70)
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(f"{quantity} over none (%)")
        axes.set_ylabel("latency over none (%)")
        for axis in (axes.xaxis, axes.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=6))
            axis.set_major_formatter(FuncFormatter(_plain))
        axes.margins(0.12)
        axes.grid(True, alpha=0.3)
    for axes in panels[len(settings):]:
        axes.set_visible(False)
    legend: dict[str, object] = {}
    for axes in panels[: len(settings)]:
        legend.update(zip(*reversed(axes.get_legend_handles_labels())))
    order = [m for m in dict.fromkeys(table["attention"]) if m in legend] + [f"latency % = {quantity} %"]
    figure.legend([legend[m] for m in order], order, loc="outside lower center", ncols=min(4 * columns, len(order)),
                  fontsize=8)
    figure.suptitle(f"Does added {quantity} predict added latency? Each module against none", fontsize=10)
    return figure


@FIGURES.register("FLOPs vs latency")
def flops_figure(run: RunView, folder: Path) -> Drawn:
    figure = flops_plot(run)
    if figure is None:
        return []
    quantity = "FLOPs" if work_column(run.overhead).startswith("flops") else "MACs"
    path = _save(figure, folder / f"{run.run_id}-{slug(quantity)}-vs-latency.png")
    return [(f"latency overhead vs {quantity} overhead, per setting at the batch size where most modules finished",
             path)]


def draw_figures(run: RunView, folder: Path) -> Drawn:
    return [drawn for _, draw in FIGURES.items() for drawn in draw(run, folder)]
