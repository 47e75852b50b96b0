"""What each module costs over the plain backbone: the overhead tables with the sentence naming the
cheapest module, and its share of the network's work beside its share of the time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from attnbench.modules import BASELINE
from attnbench.report import tables
from attnbench.report.format import Cell, md_table, sig3, si, signed, words
from attnbench.report.tables import group_title, groups, module_order
from attnbench.report.view import RunView

def _first(rows: pd.DataFrame, column: str) -> object:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=float)
    return values.iloc[0] if not values.empty else None


COST_WORDS = {
    "latency_overhead_pct": "latency", "flops_overhead_pct": "FLOPs", "macs_overhead_pct": "MACs",
    "params_overhead_pct": "parameters",
}


def cheapest_sentence(frame: pd.DataFrame, title: str) -> str:
    """Names the cheapest and the dearest module by the best cost measured; with latency, ranks the
    modules only where their intervals separate (≈ where they overlap at some batch size)."""
    column, cost, batches = tables.module_costs(frame)
    if column is None or cost.empty:
        return ""
    what = COST_WORDS[column]
    timed = column == "latency_overhead_pct"
    where = ""
    if timed:
        where = f" (mean over batch sizes {words(batches)})" if len(batches) > 1 else f" at batch size {batches[0]}"
    if len(cost) == 1:
        text = f"Only `{cost.index[0]}` was measured on {title}: {signed(cost.iloc[0])}% {what} over `{BASELINE}`{where}"
    else:
        text = f"**Cheapest in {what} on {title}: `{cost.index[0]}`**, {signed(cost.iloc[0])}% over `{BASELINE}`{where}"
        text += f"; the most expensive is `{cost.index[-1]}`, {signed(cost.iloc[-1])}%"
        if timed and _intervals(frame):
            text += f". Ranked where their 95% intervals separate: {_ranking(frame, list(cost.index), batches)}"
    noisy = int(tables.as_flag(frame["noisy"]).sum()) if timed and "noisy" in frame else 0
    if noisy:
        text += f". {noisy} of the {len(frame)} cases behind this {'is' if noisy == 1 else 'are'} noisy: rerun on a quieter machine"
    return text + "."


OVERHEAD_INTERVAL = ("latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct")
MEDIAN_INTERVAL = ("latency_ms_ci_low", "latency_ms_ci_high")


def _intervals(frame: pd.DataFrame) -> tuple[str, str] | None:
    """The intervals modules are ranked by: their paired overheads', or (runs timed before pairing) their
    medians'."""
    modules = frame[frame["attention"] != BASELINE]
    return next((bounds for bounds in (OVERHEAD_INTERVAL, MEDIAN_INTERVAL) if tables.measured(modules, list(bounds))),
                None)


def _ranking(frame: pd.DataFrame, order: list[str], batches: list) -> str:
    """`eca < se ≈ se-bias < cbam`: `<` where two neighbours' intervals separate at every batch size."""
    text = f"`{order[0]}`"
    for first, second in zip(order, order[1:]):
        text += f" {'≈' if _overlap(frame, first, second, batches) else '<'} `{second}`"
    return text


def _overlap(frame: pd.DataFrame, first: str, second: str, batches: list) -> bool:
    """Whether the two modules' intervals overlap at some batch size they both finished."""
    low, high = _intervals(frame)
    a = frame[frame["attention"] == first].set_index("batch_size")
    b = frame[frame["attention"] == second].set_index("batch_size")
    both = a.index.intersection(b.index).intersection(batches)
    low_a, high_a = (pd.to_numeric(a.loc[both, c]) for c in (low, high))
    low_b, high_b = (pd.to_numeric(b.loc[both, c]) for c in (low, high))
    separate = (high_a < low_b) | (high_b < low_a)
    return not (len(both) and bool(separate.all()))


def overhead_cell(case: pd.Series) -> Cell | None:
    """A module's latency overhead with its 95% interval, `+10.3 (9.12 to 11.5)`; None when not measured."""
    value = case.get("latency_overhead_pct")
    if value is None or pd.isna(value):
        return None
    low, high = (case.get(bound) for bound in OVERHEAD_INTERVAL)
    interval = f" ({sig3(low)} to {sig3(high)})" if pd.notna(low) and pd.notna(high) else ""
    missed = " *" if str(case.get("precision_met")) == "False" else ""
    return signed(value) + interval + missed


@dataclass(frozen=True)
class OverheadColumn:
    """A column of the overhead table: the cell of a module's rows, and the absolute cell of `none`'s rows."""

    header: str
    relative: Callable[[pd.DataFrame], Cell]
    absolute: Callable[[pd.DataFrame], Cell]


def overhead_columns(group: pd.DataFrame, at: Callable[[int, str, Callable], Callable]) -> list[OverheadColumn]:
    """The columns one group measured; `at(batch, column, show)` reads one batch size's cell."""
    batches = sorted(group["batch_size"].unique())
    smallest, largest = batches[0], batches[-1]
    columns = [
        OverheadColumn("params added", lambda r: si(_first(r, "params_attention")), lambda b: si(_first(b, "params"))),
        OverheadColumn("params (%)", lambda r: signed(_first(r, "params_overhead_pct")), lambda b: ""),
    ]
    for measure, label, unit in (("macs", "MACs", ""), ("flops", "FLOPs", ""), ("bytes_eager", "bytes", "B")):
        prefix = tables.OVERHEAD_OF[measure]
        if tables.measured(group, [f"{prefix}_overhead_pct"]):
            # Named when batch sizes vary: bytes move with the batch (the parameters are read once per call).
            at_batch = f" b={smallest}" if len(batches) > 1 else ""
            columns.append(OverheadColumn(
                f"{label}{at_batch} (%)",
                lambda r, p=prefix: signed(_first(r, f"{p}_overhead_pct")),
                lambda b, m=measure, u=unit: f"{si(_first(b[b['batch_size'] == smallest], m), u)} at batch {smallest}",
            ))
    if tables.measured(group, ["latency_overhead_pct"]):
        columns += [
            OverheadColumn(f"latency b={n} (%)", at(n, "latency_overhead_shown", str),
                           at(n, "latency_ms_median", lambda v: f"{sig3(v)} ms"))
            for n in batches
        ]
    for column, header, absolute, unit in (
        ("throughput_ratio", f"throughput ratio b={largest}", "throughput_ips", "img/s"),
        ("peak_mem_overhead_pct", f"peak memory b={largest} (%)", "peak_mem_mib", "MiB"),
    ):
        if tables.measured(group, [column]):
            show = sig3 if column == "throughput_ratio" else signed
            columns.append(OverheadColumn(header, at(largest, column, show),
                                          at(largest, absolute, lambda v, u=unit: f"{sig3(v)} {u}")))
    return columns


def overhead_part(run: RunView) -> list[str]:
    """Per backbone and setting: one row per module, costs in % over `none`, cheapest first."""
    full = run.overhead
    if full.empty:
        return []
    status = run.statuses
    explanation = (
        "Each module's cost relative to `none` in the same setting; the `none` row gives absolute numbers. "
        "Bytes are the eager memory traffic (every operator reads its inputs and writes its output)."
    )
    if tables.measured(full, list(OVERHEAD_INTERVAL)):
        explanation += (
            " Latency overheads come from the rounds a module was timed in together with its `none`: the median "
            "of its per-round ratios, with the 95% interval in parentheses."
        )
    if full.get("precision_met", pd.Series(dtype=object)).astype(str).eq("False").any():
        explanation += " * marks an interval still wider than the suite's precision target when timing hit its cap."
    lines = ["### Overhead over the plain backbone", "", explanation, ""]
    for key, group in groups(full):

        def at(batch: int, column: str, show: Callable[[object], Cell], key: tuple = key) -> Callable:
            """A cell at one batch size, or the case's status (error, oom, ...) when it did not finish there."""

            def read(rows: pd.DataFrame) -> Cell:
                found = rows.loc[rows["batch_size"] == batch, column] if column in rows else pd.Series(dtype=float)
                if not found.empty and pd.notna(found.iloc[0]):
                    return show(found.iloc[0])
                return status.get((key, rows["attention"].iloc[0], batch), "")

            return read

        if "latency_overhead_pct" in group:
            group = group.assign(latency_overhead_shown=group.apply(overhead_cell, axis=1))
        columns = overhead_columns(group, at)
        rows = []
        for attention in module_order(group):
            module = group[group["attention"] == attention]
            if attention == BASELINE:
                rows.append([f"{BASELINE} (absolute)", *[column.absolute(module) for column in columns]])
            else:
                rows.append([attention, *[column.relative(module) for column in columns]])
        title = group_title(key)
        lines += [f"#### {title}", "", cheapest_sentence(group, title), "",
                  md_table(["attention", *[column.header for column in columns]], rows), ""]
    return lines


WORK_SHARES = {"macs_share_pct": "MACs", "flops_share_pct": "FLOPs", "bytes_share_pct": "bytes"}


def shares_part(run: RunView) -> list[str]:
    """Each module's share of the network's work beside its share of the network's time."""
    frame = run.shares
    if frame.empty or "latency_share_pct" not in frame or len(frame.columns) <= len(tables.KEY) + 1:
        return []
    lines = ["### FLOPs are not latency", "",
             "The part of the whole network each module accounts for: share = (with module − without) / with "
             "module, the same rule for MACs, FLOPs, bytes and latency. A module with a small share of the "
             "arithmetic and a large share of the time is memory- or launch-bound.", ""]
    status = run.statuses
    parts = []
    for key, group in groups(frame):
        batches = sorted(group["batch_size"].unique())
        quantities = [c for c in WORK_SHARES if tables.measured(group, [c])]
        if not quantities and not tables.measured(group, ["latency_share_pct"]):
            continue  # no `none` to take shares of: the warnings say so
        extras = [(c, n) for c, n in (("module_alone_share_pct", "module alone"), ("profiled_share_pct", "profiled"))
                  if tables.measured(group, [c])]
        header = ["attention", *[f"{WORK_SHARES[c]} share (%)" for c in quantities]]
        header += [f"latency share b={b} (%)" for b in batches]
        header += [f"{name} b={batches[-1]} (%)" for _, name in extras]
        rows = []
        for attention, module in group.groupby("attention", sort=False):
            at = module.set_index("batch_size")
            rows.append([
                attention,
                *[sig3(_first(module, c)) for c in quantities],
                *[sig3(at["latency_share_pct"].get(b)) or status.get((key, attention, b), "") for b in batches],
                *[sig3(at[c].get(batches[-1])) for c, _ in extras],
            ])
        parts += [f"#### {group_title(key)}", "", _contrast(group, quantities), "", md_table(header, rows), ""]
    return lines + parts if parts else []


def _contrast(group: pd.DataFrame, quantities: list[str]) -> str:
    """One sentence on the module whose time share most exceeds its arithmetic share."""
    work = next((c for c in ("flops_share_pct", "macs_share_pct") if c in quantities), None)
    if work is None:
        return ""
    rows = group[(group[work] > 0) & group["latency_share_pct"].notna()]
    if rows.empty:
        return ""
    row = rows.loc[(rows["latency_share_pct"] / rows[work]).idxmax()]
    return (f"For example, `{row['attention']}` accounts for {sig3(row[work])}% of the "
            f"{'FLOPs' if work.startswith('flops') else 'MACs'} but {sig3(row['latency_share_pct'])}% of the latency "
            f"at batch {row['batch_size']}.")
