"""The machine's noise floor for a suite: an A/A twin of `none` timed in every comparison group.

The twin is a second copy of the plain backbone, timed and paired exactly like a module. Its true
overhead is zero, so what its measured overhead and interval show is what the machine and the suite's
budget can resolve: how far from zero an overhead lands by noise alone, how often an interval misses
zero (a false alarm), and the smallest difference between two modules' overheads that their intervals
can separate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from attnbench.config import SuiteSpec, attention_entry, suite_to_dict
from attnbench.modules import BASELINE

AA_LABEL = f"{BASELINE} A/A"
"""The twin's label: a case of its own (its case key differs from `none`'s only by the label)."""


def with_twin(suite: SuiteSpec) -> SuiteSpec:
    """The suite with the A/A twin after `none` in its attention entries (it must have `none`)."""
    entries = suite.grid.attention
    if not any(entry.label == BASELINE for entry in entries):
        return suite
    twin = attention_entry(BASELINE, label=AA_LABEL)
    position = next(i for i, entry in enumerate(entries) if entry.label == BASELINE) + 1
    grid = replace(suite.grid, attention=(*entries[:position], twin, *entries[position:]))
    calibrated = replace(suite, grid=grid)
    return replace(calibrated, raw=suite_to_dict(calibrated))


def noise_floor(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """meta.json's `calibration`, from the twin's rows: its overheads over `none`, which should be 0."""
    twins = [row for row in rows if row.get("attention") == AA_LABEL and row.get("latency_overhead_pct") is not None]
    if not twins:
        return None
    overheads = np.array([row["latency_overhead_pct"] for row in twins], dtype=float)
    lows = np.array([row["latency_overhead_ci_low_pct"] for row in twins], dtype=float)
    highs = np.array([row["latency_overhead_ci_high_pct"] for row in twins], dtype=float)
    half_width = float(np.median((highs - lows) / 2))
    return {
        "groups": len(twins),
        "median_abs_overhead_pct": float(np.median(np.abs(overheads))),
        "max_abs_overhead_pct": float(np.max(np.abs(overheads))),
        "median_half_width_pct": half_width,
        "false_alarms": int(np.sum((lows > 0) | (highs < 0))),
        "resolvable_difference_pct": 2 * half_width,
    }


def noise_floor_sentence(calibration: dict[str, Any]) -> str:
    """What a report says of a run's noise floor."""
    return (
        f"**Noise floor (A/A).** `{AA_LABEL}`, a second copy of the plain backbone timed like a module in "
        f"{calibration['groups']} group(s), came out at {calibration['median_abs_overhead_pct']:.2f} points "
        f"from zero (median; at most {calibration['max_abs_overhead_pct']:.2f}), with 95% intervals of "
        f"±{calibration['median_half_width_pct']:.2f} points; {calibration['false_alarms']} of "
        f"{calibration['groups']} intervals missed zero. Overheads that differ by less than about "
        f"{calibration['resolvable_difference_pct']:.1f} points are not told apart at this budget."
    )
