"""pandas tables derived from a run's cases; formatting lives in markdown.py."""

from __future__ import annotations

import pandas as pd

from attnbench.modules import BASELINE

GROUP = ["backbone", "batch_size", "resolution", "dtype", "mode", "device"]


def with_overhead(cases: pd.DataFrame) -> pd.DataFrame:
    """Adds latency_overhead_pct: each case's median latency over its backbone's `none` case."""
    ok = cases[cases["status"] == "ok"].copy()
    baseline = ok[ok["attention"] == BASELINE].set_index(GROUP)["latency_ms_median"].rename("base_ms")
    ok = ok.join(baseline, on=GROUP)
    ok["latency_overhead_pct"] = (ok["latency_ms_median"] / ok["base_ms"] - 1) * 100
    return ok.drop(columns="base_ms")


def summary_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per case: complexity, latency and overhead, in grid order."""
    table = with_overhead(cases)
    columns = [
        "backbone",
        "attention",
        "batch_size",
        "resolution",
        "params",
        "params_attention",
        "macs",
        "latency_ms_median",
        "latency_ms_iqr",
        "latency_overhead_pct",
        "throughput_ips",
    ]
    return table[[c for c in columns if c in table.columns and table[c].notna().any()]]


def problem_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases that did not finish with status ok, with their reasons."""
    bad = cases[cases["status"] != "ok"]
    return bad[["backbone", "attention", "batch_size", "resolution", "dtype", "mode", "status", "error"]]
