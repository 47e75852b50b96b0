"""The "Accuracy against cost" report section and figure: what a module buys against what it costs here.

For each backbone and setting, each measured module's published top-1 gain (attnbench.accuracy: over the
same source's baseline) beside this run's overheads over `none`, with the Pareto front (no other choice,
`none` included, is at most as costly and at least as accurate, and better in one of the two) for latency,
FLOPs and bytes. Costs are taken at one batch size per setting: the largest the plain backbone finished,
where a deployment that batches runs and where launch overheads weigh least.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from attnbench.accuracy import AccuracyRow, case_configuration, matching
from attnbench.modules import BASELINE
from attnbench.report.format import md_table, signed, words
from attnbench.report.markdown import SECTIONS
from attnbench.report.plots import FIGURES, Drawn, slug
from attnbench.report.tables import group_title, groups, overhead_interval
from attnbench.report.view import RunView

COSTS = {"latency_overhead_pct": "latency", "flops_overhead_pct": "FLOPs", "bytes_overhead_pct": "bytes"}
"""Overheads a module is weighed by, in the order the section and the figure show them."""

CAVEAT = (
    "Each gain is a published ImageNet-1k top-1 (attnbench's table of published results, after the lab's own "
    "`accuracy_csv`) minus the baseline of the same source and table, so it carries that source's training "
    "recipe, and recipes move top-1 as much as modules do: in timm's results, with one recipe for both, "
    "SE-ResNet-50 is below ResNet-50 under two of three recipes. Read the front as a shortlist of modules to "
    "train under your own recipe, not as a verdict. Costs are this run's, at the largest batch size the plain "
    "backbone finished in each setting; the latency interval is the overhead's paired 95% interval (over the "
    "rounds the module shared with its `none`; for runs timed before pairing, the two cases' own intervals "
    "at their extremes). ≈ marks a gain published for another configuration of the module (other options or "
    "placement) than the one measured."
)


@dataclass(frozen=True)
class Point:
    """One choice in one setting: a module (or `none`), its published gain and its measured costs."""

    attention: str
    gain_pp: float
    rows: tuple[AccuracyRow, ...]
    """The published rows that match, the one shown first; empty for `none`."""
    exact: bool
    costs: dict[str, float]
    """Cost column -> overhead over `none` in %, NaN where not measured."""
    interval: tuple[float, float] | None
    missing: str = ""
    """Why there is no latency at the chosen batch size (the case's status), if so."""
    front: frozenset[str] = field(default_factory=frozenset)
    """The cost columns on whose Pareto front the point lies."""


@dataclass(frozen=True)
class Choice:
    """One backbone and setting: the points at one batch size, and what could not be weighed."""

    key: tuple
    batch: int
    points: tuple[Point, ...]
    unmatched: tuple[str, ...]
    """Modules measured here without a published gain for this backbone."""
    references: tuple[AccuracyRow, ...]
    """Published top-1 of the plain backbone (torchvision's weights under their recipes)."""

    @property
    def weighed(self) -> bool:
        """Whether any module here has a published gain to weigh against its cost."""
        return len(self.points) > 1

    @property
    def measured(self) -> list[str]:
        """The cost columns some point has a value for."""
        return [column for column in COSTS if any(not math.isnan(p.costs[column]) for p in self.points)]


def pareto_front(costs: Sequence[float], gains: Sequence[float]) -> list[bool]:
    """Which points no other point dominates, minimizing cost and maximizing gain; a NaN cost is never on it."""
    valid = [not math.isnan(c) and not math.isnan(g) for c, g in zip(costs, gains)]
    return [
        valid[i] and not any(
            valid[j] and costs[j] <= costs[i] and gains[j] >= gains[i] and (costs[j] < costs[i] or gains[j] > gains[i])
            for j in range(len(costs))
        )
        for i in range(len(costs))
    ]


def _point(attention: str, module: pd.DataFrame, base: pd.Series, batch: int, found: list[AccuracyRow],
           exact: bool, status: dict[tuple[str, int], str]) -> Point:
    at = module[module["batch_size"] == batch]
    case = at.iloc[0] if not at.empty else module.iloc[0]
    costs = {column: float(case[column]) if column in case and pd.notna(case[column]) else math.nan
             for column in COSTS}
    interval = None
    if at.empty:
        costs["latency_overhead_pct"] = math.nan  # the row read is at another batch size
    elif attention != BASELINE:
        interval = overhead_interval(case, base)
    return Point(attention, found[0].gain_pp if found else 0.0, tuple(found), exact, costs, interval,
                 "" if not at.empty else status.get((attention, batch), "not measured"))


def run_choices(run: RunView) -> list[Choice]:
    """`choices` of a run against its report's accuracy table, derived once for the section and the figure."""
    return run.memo("accuracy choices", lambda: choices(run, run.options.accuracy))


def choices(run: RunView, rows: tuple[AccuracyRow, ...]) -> list[Choice]:
    """Per backbone and setting with a timed `none`: the points of the modules with a published gain."""
    full = run.overhead
    if "latency_overhead_pct" not in full:
        return []
    found: list[Choice] = []
    for key, group in groups(full):
        timed = group[(group["attention"] == BASELINE) & group["latency_ms_median"].notna()]
        if timed.empty:
            continue
        backbone, batch = key[0], int(timed["batch_size"].max())
        base = timed[timed["batch_size"] == batch].iloc[0]
        bad = run.cases[(run.cases["backbone"] == backbone) & (run.cases["status"] != "ok")]
        status = {(r.attention, int(r.batch_size)): r.status for r in bad.itertuples()}
        points, unmatched = [_point(BASELINE, timed, base, batch, [], True, status)], []
        for attention, module in group.groupby("attention", sort=False):
            if attention == BASELINE:
                continue
            first = module.iloc[0]
            module_key = first["attention_key"]
            matched, exact = matching(rows, backbone, module_key,
                                      case_configuration(module_key, first["options"], first["placement"], attention))
            if matched:
                points.append(_point(attention, module, base, batch, matched, exact, status))
            else:
                unmatched.append(attention)
        for column in COSTS:
            on = pareto_front([p.costs[column] for p in points], [p.gain_pp for p in points])
            points = [replace(p, front=p.front | {column}) if o else p for p, o in zip(points, on)]
        references = tuple(r for r in rows if r.backbone == backbone and r.attention == BASELINE)
        found.append(Choice(key, batch, tuple(points), tuple(unmatched), references))
    return found


# ---------------------------------------------------------------- Markdown


def _source(row: AccuracyRow) -> str:
    name = f"{row.source}, {row.where}" if row.where else row.source
    return f"[{name}]({row.url})" if row.url else name


def _published(point: Point) -> str:
    if not point.rows:
        return "the plain backbone"
    row = point.rows[0]
    text = (f"{row.model} {row.top1_pct:.{row.decimals}f}% vs "
            f"{row.baseline_model} {row.baseline_top1_pct:.{row.decimals}f}%")
    if row.epochs or row.baseline_epochs:
        text += f", {row.epochs or '?'}/{row.baseline_epochs or '?'} epochs"
    if not point.exact:
        text += f"; published as `{row.configuration}`"
    return text + (" (lab)" if row.lab else "")


def _latency(point: Point) -> tuple[str, str]:
    value = point.costs["latency_overhead_pct"]
    if math.isnan(value):
        return point.missing, ""
    interval = f"{signed(point.interval[0])} to {signed(point.interval[1])}" if point.interval else ""
    return signed(value) if point.attention != BASELINE else "0", interval


def _front_sentence(points: tuple[Point, ...], measured: list[str]) -> str:
    parts = []
    for column in measured:
        on = [f"`{p.attention}`" for p in points if column in p.front]
        parts.append(f"by {COSTS[column]}: {words(on)}")
    return "**Pareto front " + parts[0] + "**" + "".join(f"; {part}" for part in parts[1:]) + "."


def choice_markdown(choice: Choice) -> list[str]:
    measured = choice.measured
    lines = [f"#### {group_title(choice.key)}: batch {choice.batch}", "", _front_sentence(choice.points, measured)]
    resolution = int(choice.key[1])
    published_at = sorted({r.resolution_px for p in choice.points for r in p.rows[:1] if r.resolution_px})
    if published_at and published_at != [resolution]:
        lines[-1] += (f" The published top-1 is at {words(published_at)} px; the costs here are at {resolution} px, "
                      "where a module's share of the time can differ.")
    if len(choice.references) > 1:
        spread = max(r.top1_pct for r in choice.references) - min(r.top1_pct for r in choice.references)
        tops = words([f"{r.model} {r.top1_pct:.{r.decimals}f}%" for r in choice.references])
        lines[-1] += (f" The plain {choice.key[0]} alone spans {spread:.2f} pp between the recipes of its "
                      f"published weights ({tops}).")
    if choice.unmatched:
        lines[-1] += f" No published gain for {words([f'`{m}`' for m in choice.unmatched])} in {choice.key[0]}."
    header = ["attention", "top-1 gain (pp)", "published", "source", f"latency b={choice.batch} (%)",
              "latency interval (%)", *[f"{COSTS[c]} b={choice.batch} (%)" for c in measured if c != "latency_overhead_pct"],
              "other published gains (pp)", "on the front of"]
    table = []
    for point in choice.points:
        latency, interval = _latency(point)
        first = point.rows[0] if point.rows else None
        others = words([f"{r.gain_text()} ({r.source} {r.model})" for r in point.rows[1:]])
        table.append([
            point.attention + ("" if point.exact else " ≈"),
            first.gain_text() if first else "0",
            _published(point),
            _source(first) if first else "",
            latency, interval,
            *[signed(point.costs[c]) if point.attention != BASELINE else "0"
              for c in measured if c != "latency_overhead_pct"],
            others,
            words([COSTS[c] for c in COSTS if c in point.front]) or "-",
        ])
    notes = [f"- `{p.attention}`: {p.rows[0].note}" for p in choice.points if p.rows and p.rows[0].note]
    return lines + ["", md_table(header, table), ""] + (["Notes on the sources shown:", *notes, ""] if notes else [])


@SECTIONS.register("Accuracy against cost")
def accuracy_against_cost(run: RunView) -> str | None:
    found = run_choices(run)
    weighed = [choice for choice in found if choice.weighed]
    if not weighed:
        return None
    lines = [CAVEAT, ""]
    for choice in weighed:
        lines += choice_markdown(choice)
    left = [f"{group_title(c.key)} ({words([f'`{m}`' for m in c.unmatched])})" for c in found
            if not c.weighed and c.unmatched]
    if left:
        lines.append(f"No module measured here has a published gain in: {'; '.join(left)}.")
    return "\n".join(lines)


# ---------------------------------------------------------------- figure


def _draw(axes, choice: Choice, column: str) -> None:
    front = sorted((p for p in choice.points if column in p.front), key=lambda p: p.costs[column])
    axes.plot([p.costs[column] for p in front], [p.gain_pp for p in front], color="black", linestyle="--",
              linewidth=1, zorder=1)
    placed: list[tuple[float, float]] = []
    for index, point in enumerate(choice.points):
        if math.isnan(point.costs[column]):
            continue
        x = point.costs[column]
        style = _style(index, point)
        # A point on top of earlier ones (se and se-bias have the same FLOPs) is drawn smaller, so that
        # theirs still show around it.
        under = sum(math.isclose(x, ux, abs_tol=COINCIDENT[0])
                    and math.isclose(point.gain_pp, uy, abs_tol=COINCIDENT[1])
                    for ux, uy in placed)
        placed.append((x, point.gain_pp))
        if column == "latency_overhead_pct" and point.interval:
            axes.errorbar(x, point.gain_pp, xerr=[[max(x - point.interval[0], 0)], [max(point.interval[1] - x, 0)]],
                          fmt="none", ecolor=style["color"], capsize=2, zorder=2)
        others = [r.gain_pp for r in point.rows[1:]]
        if others:
            axes.vlines(x, min(others + [point.gain_pp]), max(others + [point.gain_pp]), color=style["color"],
                        linewidth=4, alpha=0.25, zorder=1)
        edge = "black" if column in point.front else style["color"]
        axes.scatter(x, point.gain_pp, s=70 * 0.45**under, marker=style["marker"], color=style["color"],
                     edgecolors=edge, linewidths=1.5, zorder=3 + under)
    untimed = [f"{p.attention} ({p.missing})" for p in choice.points if math.isnan(p.costs[column])]
    if untimed and column == "latency_overhead_pct":
        axes.text(0.98, 0.02, f"not timed at batch {choice.batch}:\n" + ", ".join(untimed), transform=axes.transAxes,
                  ha="right", va="bottom", fontsize=8, color="dimgrey")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_xlabel(f"{COSTS[column]} over none (%), batch {choice.batch}")
    axes.grid(True, alpha=0.3)
    axes.margins(x=0.15, y=0.2)


COINCIDENT = (0.05, 0.02)
"""Points closer than this (percentage points of cost, of gain) are drawn as lying on each other."""

MARKERS = "oD^vP*Xhp<>"
"""Module markers; the square is `none`'s."""


def _style(index: int, point: Point) -> dict[str, str]:
    if point.attention == BASELINE:
        return {"color": "grey", "marker": "s"}
    return {"color": f"C{(index - 1) % 10}", "marker": MARKERS[(index - 1) % len(MARKERS)]}


def _legend_label(point: Point) -> str:
    if not point.rows:
        return BASELINE
    row = point.rows[0]
    if point.exact:
        return f"{point.attention} ({row.source})"
    return f"{point.attention} ≈ ({row.source}, as {row.configuration})"


def legend_entries(choice: Choice, measured: list[str]) -> tuple[list, list[str]]:
    """One entry per point, then what the lines and shades mean, where the figure draws them."""
    handles: list = [Line2D([], [], linestyle="none", markersize=8, **_style(index, point))
                     for index, point in enumerate(choice.points)]
    labels = [_legend_label(p) for p in choice.points]
    if any(len([p for p in choice.points if column in p.front]) > 1 for column in measured):
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1))
        labels.append("Pareto front (black edge: on it)")
    else:  # a front of one point draws no line: only its edge says it
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="white",
                              markeredgecolor="black", markeredgewidth=1.5))
        labels.append("black edge: on the Pareto front")
    if any(point.rows[1:] for point in choice.points):
        handles.append(Patch(color="grey", alpha=0.25))
        labels.append("shaded: other published gains of the module")
    return handles, labels


@FIGURES.register("accuracy against cost")
def accuracy_figure(run: RunView, folder: Path) -> Drawn:
    drawn: Drawn = []
    for choice in filter(lambda choice: choice.weighed, run_choices(run)):
        measured = choice.measured
        figure = Figure(figsize=(3.6 * len(measured) + 0.6, 4.6), layout="constrained")
        panels = figure.subplots(1, len(measured), sharey=True, squeeze=False)[0]
        for axes, column in zip(panels, measured):
            _draw(axes, choice, column)
        panels[0].set_ylabel("published top-1 gain (pp)")
        handles, labels = legend_entries(choice, measured)
        figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8)
        figure.suptitle(f"Published top-1 gain against measured cost: {group_title(choice.key)}", fontsize=10)
        path = folder / f"{run.run_id}-accuracy-{slug(group_title(choice.key))}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
        drawn.append((f"published top-1 gain vs overhead at batch {choice.batch}: {group_title(choice.key)} "
                      "(bars: latency interval; shaded: other published gains)", path))
    return drawn
