"""pandas tables derived from a run's cases: tidy (long) frames for csv/json, pivots for Markdown.

Formatting lives in markdown.py and figures in plots.py; everything here is numbers only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd

from attnbench.modules import BASELINE
from attnbench.registry import Registry
from attnbench.results import CASE_KEY, SETTING, TABLE_SETTING
from attnbench.runtimes import EAGER

GROUP = list(SETTING)
"""Cases that differ only in their attention module; each is compared with the `none` case of its group."""
KEY = list(CASE_KEY)

OVERHEAD_OF = {
    "params": "params",
    "macs": "macs",
    "flops": "flops",
    "bytes_eager": "bytes",
    "latency_ms_median": "latency",
    "peak_mem_mib": "peak_mem",
}
"""Measured column -> prefix of its `<prefix>_overhead_pct` (percent over the same group's `none` case)."""

ADDED_OF = {"kernel_count": "launches_added"}
"""Measured column -> the column of its difference from the same group's `none` case."""

SHARE_OF = {"macs": "macs", "flops": "flops", "bytes_eager": "bytes"}
"""Counted column -> prefix of its `<prefix>_share_pct`: the part of the whole network the module adds.
The latency share comes from the latency overhead (paired where the run has it), not from two medians."""

TableFn = Callable[[pd.DataFrame], pd.DataFrame]
TABLES: Registry[TableFn] = Registry("report table")
"""Tidy tables of one run's cases, exported by `report --format csv|json`; filled by `@TABLES.register`."""


def as_flag(column: pd.Series) -> pd.Series:
    """True/False however the CSV spelled it; empty (a column older runs lack) reads as False."""
    return column.map(lambda value: str(value).strip().lower() in ("true", "1", "1.0"))


def normalized(cases: pd.DataFrame) -> pd.DataFrame:
    """Boolean axes as booleans and a missing runtime as eager, so that rows without channels_last or
    runtime group like rows with their defaults."""
    cases = cases.copy()
    for column in ("channels_last", "noisy"):
        cases[column] = as_flag(cases[column])
    cases["runtime"] = cases["runtime"].astype(object).fillna(EAGER) if "runtime" in cases else EAGER
    return cases


def ok_cases(cases: pd.DataFrame) -> pd.DataFrame:
    return normalized(cases[cases["status"] == "ok"])


def measured(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns of `columns` that hold at least one value."""
    return [c for c in columns if c in frame.columns and pd.to_numeric(frame[c], errors="coerce").notna().any()]


def with_baseline(cases: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Finished cases with `base_<column>`: the value of their group's `none` case (the one join onto
    `none`; empty where the group has no finished `none`). `columns` become numeric."""
    ok = ok_cases(cases)
    columns = measured(ok, columns)
    for column in columns:
        ok[column] = pd.to_numeric(ok[column], errors="coerce")
    base = ok[ok["attention"] == BASELINE].drop_duplicates(GROUP).set_index(GROUP)[columns]
    return ok.join(base.add_prefix("base_"), on=GROUP)


def with_overhead(cases: pd.DataFrame) -> pd.DataFrame:
    """Finished cases with `<x>_overhead_pct` over their group's `none` case, throughput_ratio, the
    launches added, and the `none` values themselves (`base_<x>`).

    A case whose group has no finished `none` case gets empty overheads rather than a guess.
    """
    wanted = [*OVERHEAD_OF, *ADDED_OF, "throughput_ips"]
    ok = with_baseline(cases, wanted)
    paired = pd.to_numeric(ok["latency_overhead_pct"], errors="coerce") if "latency_overhead_pct" in ok else None
    columns = [c for c in wanted if f"base_{c}" in ok]
    for column in columns:
        if column in OVERHEAD_OF:
            ok[f"{OVERHEAD_OF[column]}_overhead_pct"] = (ok[column] / ok[f"base_{column}"] - 1) * 100
        if column in ADDED_OF:
            ok[ADDED_OF[column]] = ok[column] - ok[f"base_{column}"]
    if paired is not None and "latency_overhead_pct" in ok:
        # The overhead taken round by round beside `none` where the run has it (the ratio of the two
        # medians otherwise: runs timed before pairing, or a group that lost its `none` while timing).
        ok["latency_overhead_pct"] = paired.where(paired.notna(), ok["latency_overhead_pct"])
        for bound in ("latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct"):
            if bound in ok:
                ok[bound] = pd.to_numeric(ok[bound], errors="coerce")
    if "throughput_ips" in columns:
        # Throughput is batch / latency, so its ratio follows from the latency overhead: the paired one
        # where the run has it, not a ratio of two independent medians beside it.
        ok["throughput_ratio"] = 100 / (100 + ok["latency_overhead_pct"])
    return ok


def groups(frame: pd.DataFrame) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """(backbone, *setting) -> its rows, in the order the grid ran them."""
    if frame.empty:
        return
    yield from frame.groupby(list(TABLE_SETTING), sort=False, dropna=False)


AXES = {
    "backbone": "backbone", "batch_size": "batch", "resolution": "res (px)", "dtype": "dtype", "mode": "mode",
    "device": "device", "channels_last": "memory format", "runtime": "runtime",
}
"""The grid's axes (a case's setting) and their headers in tables."""


def varying(frame: pd.DataFrame, columns: tuple[str, ...] = SETTING) -> list[str]:
    """The axes of `columns` that take more than one value in `frame`: those its rows must show to differ."""
    return [c for c in columns if c in frame and frame[c].nunique(dropna=False) > 1]


def axis_value(column: str, value: object) -> str:
    """One axis value as a table cell: a memory format says what it is, not True/False."""
    if column == "channels_last":
        return "channels_last" if value is True or str(value) == "True" else "contiguous"
    return str(value)


def constant_words(frame: pd.DataFrame, columns: tuple[str, ...] = SETTING) -> list[str]:
    """The axes of `columns` that hold one value in `frame`, in words ("resnet18", "64 px", "batch 1", ...);
    the defaults (contiguous, eager) are left unsaid."""
    words = []
    for column in columns:
        values = frame[column].unique() if column in frame else []
        if len(values) != 1:
            continue
        value = values[0]
        if column == "resolution":
            words.append(f"{int(value)} px")
        elif column == "batch_size":
            words.append(f"batch {value}")
        elif column == "channels_last":
            if axis_value(column, value) == "channels_last":
                words.append("channels_last")
        elif column == "runtime":
            if value != EAGER:
                words.append(str(value))
        else:
            words.append(str(value))
    return words


def group_title(key: tuple) -> str:
    backbone, resolution, dtype, mode, device, channels_last, runtime = key
    extras = ["channels_last"] if channels_last else []
    extras += [runtime] if runtime != EAGER else []
    return ", ".join([f"{backbone} at {int(resolution)} px", dtype, mode, device, *extras])


def overhead_interval(case: pd.Series, base: pd.Series) -> tuple[float, float] | None:
    """The latency overhead's 95% interval in %: the paired one the run measured (from the rounds the module
    shared with its `none`), or for runs timed before pairing the module's and `none`'s own intervals taken
    at their extremes, which is wider. The one place the report and its figures take an interval from."""
    paired = [pd.to_numeric(case.get(c), errors="coerce") for c in ("latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct")]
    if not any(pd.isna(bound) for bound in paired):
        return float(paired[0]), float(paired[1])
    low, high, base_low, base_high = (
        pd.to_numeric(row.get(column), errors="coerce")
        for row, column in ((case, "latency_ms_ci_low"), (case, "latency_ms_ci_high"),
                            (base, "latency_ms_ci_low"), (base, "latency_ms_ci_high"))
    )
    if any(pd.isna(bound) for bound in (low, high, base_low, base_high)):
        return None
    return (low / base_high - 1) * 100, (high / base_low - 1) * 100


COST_COLUMNS = ("latency_overhead_pct", "flops_overhead_pct", "macs_overhead_pct", "params_overhead_pct")
"""What "cheapest" means, in order of preference: the first of these a group measured."""


def module_costs(frame: pd.DataFrame) -> tuple[str | None, pd.Series, list]:
    """(cost column, cost per module ascending, batch sizes averaged over) for one group's overhead rows.

    The mean runs over the batch sizes every module finished, so a module that ran out of memory at the
    large batch is not made to look cheap by its small-batch number alone.
    """
    modules = frame[frame["attention"] != BASELINE]
    column = next((c for c in COST_COLUMNS if c in modules and modules[c].notna().any()), None)
    if column is None:
        return None, pd.Series(dtype=float), []
    per_batch = modules.pivot_table(index="attention", columns="batch_size", values=column, aggfunc="first")
    common = per_batch.dropna(axis=1)
    used = common if not common.empty else per_batch
    return column, used.mean(axis=1).sort_values(kind="stable"), list(used.columns)


def module_order(frame: pd.DataFrame) -> list[str]:
    """Attention labels of one group: `none` first, then cheapest to dearest, then modules with no cost."""
    _, cost, _ = module_costs(frame)
    labels = list(frame["attention"].unique())
    rest = [label for label in labels if label not in cost.index and label != BASELINE]
    return ([BASELINE] if BASELINE in labels else []) + cost.index.tolist() + rest


@TABLES.register("overhead")
def overhead(cases: pd.DataFrame) -> pd.DataFrame:
    """Per case: parameters added, and MACs/FLOPs/bytes/latency/memory over `none` in percent, with the
    latency overhead's 95% interval where the run timed the module beside its `none`."""
    table = with_overhead(cases)
    columns = [
        *KEY,
        "params_attention",
        *[f"{prefix}_overhead_pct" for prefix in OVERHEAD_OF.values()],
        "latency_overhead_ci_low_pct",
        "latency_overhead_ci_high_pct",
        "throughput_ratio",
    ]
    return table[[c for c in columns if c in table.columns]].reset_index(drop=True)


@TABLES.register("shares")
def shares(cases: pd.DataFrame) -> pd.DataFrame:
    """Per case: the share of the network's MACs, FLOPs, bytes and latency that the module adds.

    share = (with module - without) / with module, the same rule for every quantity, so the columns
    compare directly: a module with 2% of the FLOPs and 20% of the latency is memory- or launch-bound.
    """
    return shares_of(with_overhead(cases))


def shares_of(overhead: pd.DataFrame) -> pd.DataFrame:
    """`shares` from cases already joined onto their `none` (with_overhead)."""
    columns = [c for c in SHARE_OF if f"base_{c}" in overhead]
    ok = overhead[overhead["attention"] != BASELINE]
    out = ok[KEY].copy()
    for column in columns:
        out[f"{SHARE_OF[column]}_share_pct"] = (1 - ok[f"base_{column}"] / ok[column]) * 100
    if "base_latency_ms_median" in overhead:
        out["latency_share_pct"] = (1 - 100 / (100 + ok["latency_overhead_pct"])) * 100
    if measured(ok, ["module_latency_ms_median", "latency_ms_median"]) == [
        "module_latency_ms_median",
        "latency_ms_median",
    ]:
        out["module_alone_share_pct"] = ok["module_latency_ms_median"] / ok["latency_ms_median"] * 100
    if measured(ok, ["attention_time_share"]):
        out["profiled_share_pct"] = pd.to_numeric(ok["attention_time_share"], errors="coerce") * 100
    return out.reset_index(drop=True)


def _timed(cases: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Finished cases that measured columns[0], with whichever of `columns` they have."""
    ok = ok_cases(cases)
    present = measured(ok, columns)
    if columns[0] not in present:
        return pd.DataFrame(columns=KEY)
    return ok.loc[pd.to_numeric(ok[columns[0]], errors="coerce").notna(), [*KEY, *present]].reset_index(drop=True)


@TABLES.register("latency")
def latency(cases: pd.DataFrame) -> pd.DataFrame:
    """Per case: latency statistics derived from the raw samples (median, IQR, percentiles, 95% CI)."""
    return _timed(
        cases,
        [
            "latency_ms_median", "latency_ms_iqr", "latency_ms_p10", "latency_ms_p90",
            "latency_ms_ci_low", "latency_ms_ci_high", "wall_ms_median", "repeats", "noisy",
        ],
    )


@TABLES.register("throughput")
def throughput(cases: pd.DataFrame) -> pd.DataFrame:
    return _timed(cases, ["throughput_ips", "achieved_bandwidth_gbs", "bandwidth_fraction"])


@TABLES.register("memory")
def memory(cases: pd.DataFrame) -> pd.DataFrame:
    return _timed(cases, ["peak_mem_mib", "peak_mem_reserved_mib"])


@TABLES.register("problems")
def problem_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases that did not finish with status ok, with their reasons."""
    bad = cases[cases["status"] != "ok"]
    columns = ["backbone", "attention", "batch_size", "resolution", "dtype", "mode", "device", "status", "error"]
    return bad[columns].fillna({"error": ""}).reset_index(drop=True)


def grid_pivot(frame: pd.DataFrame, values: list[str]) -> pd.DataFrame:
    """Rows = backbone, attention (+ dtype/mode/... where they vary); columns = (value, batch, resolution).

    Rows and columns keep the order in which the grid ran them, so `none` stays where the suite put it.
    """
    index = ["backbone", *[c for c in varying(frame, TABLE_SETTING[1:]) if c != "resolution"], "attention"]
    table = frame.pivot_table(index=index, columns=["batch_size", "resolution"], values=values, aggfunc="first")
    appearance = {c: {v: i for i, v in enumerate(frame[c].unique())} for c in index}
    return table.sort_index(key=lambda level: level.map(appearance[level.name]))
