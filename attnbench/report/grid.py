"""The batch x resolution grids: latency, throughput and peak memory of every case."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from attnbench.report import tables
from attnbench.report.format import Cell, md_table, sig3
from attnbench.report.header import NOISY_TEXT
from attnbench.report.view import RunView


def pivot_part(title: str, explanation: str, frame: pd.DataFrame, value: str, unit: str,
               show: Callable[[pd.Series], Cell]) -> list[str]:
    """A batch x resolution pivot of one measured value; `show` renders one case's numbers."""
    if value not in frame or frame.empty:
        return []
    pivot = tables.grid_pivot(frame, [c for c in frame.columns if c not in tables.KEY])
    index = list(pivot.index.names)
    grid = list(dict.fromkeys((b, r) for _, b, r in pivot.columns))
    rows = []
    for keys, values in pivot.iterrows():
        keys = keys if isinstance(keys, tuple) else (keys,)
        per_case = [values.xs((b, r), level=(1, 2)) for b, r in grid]
        rows.append([*[str(k) for k in keys], *[show(case) for case in per_case]])
    header = [*[name.replace("_", " ") for name in index], *[f"b={b}, {r} px ({unit})" for b, r in grid]]
    return [f"### {title}", "", explanation, "", md_table(header, rows), ""]


def _latency_cell(case: pd.Series) -> Cell:
    median = sig3(case.get("latency_ms_median"))
    if not median:
        return ""
    if pd.notna(case.get("latency_ms_ci_low")) and pd.notna(case.get("latency_ms_ci_high")):
        median += f" ({sig3(case['latency_ms_ci_low'])}–{sig3(case['latency_ms_ci_high'])})"
    elif pd.notna(case.get("latency_ms_iqr")):
        median += f" (IQR {sig3(case['latency_ms_iqr'])})"
    return median + (" †" if str(case.get("noisy")) == "True" else "")


def grid_parts(run: RunView) -> list[str]:
    return [
        *pivot_part(
            "Latency", f"Median latency per call in ms, with the bootstrap 95% confidence interval of the median in "
            f"parentheses; † marks noisy cases ({NOISY_TEXT}).",
            tables.latency(run.cases), "latency_ms_median", "ms", _latency_cell,
        ),
        *pivot_part(
            "Throughput", "Images per second: batch size / median latency.",
            tables.throughput(run.cases), "throughput_ips", "img/s", lambda case: sig3(case.get("throughput_ips")),
        ),
        *pivot_part(
            "Peak memory", "Peak memory of one timed step (eval: a forward; train: forward, backward and SGD) above "
            "what was allocated before it, in MiB.",
            tables.memory(run.cases), "peak_mem_mib", "MiB", lambda case: sig3(case.get("peak_mem_mib")),
        ),
    ]
