"""The grid a run was asked for, rebuilt from its meta.json, and its cases that have no row: an
interrupted or killed run is reported against its whole grid, not only against what it finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.config import ProjectConfig, expand_grid, parse_suite
from attnbench.errors import AttnbenchError
from attnbench.results import case_key

MISSING_LISTED = 8
"""Missing cases named in a report's warnings; the rest are counted."""


def grid_keys(meta: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The case keys of the run's grid, in grid order; None when the recorded suite cannot be rebuilt
    (written by hand, or naming a module this process does not have)."""
    if not isinstance(meta.get("suite"), dict):
        return None
    here = Path(".")
    try:
        # The recorded suite is resolved: its device and timing come with it, not from a project.
        suite = parse_suite(meta["suite"], "meta.json", ProjectConfig(root=here, results_dir=here, suites_dir=here))
    except AttnbenchError:
        return None
    device = str(meta.get("device", suite.grid.device)).split(":")[0]
    return [case.key for case in expand_grid(suite, device)]


def missing_keys(grid: list[dict[str, Any]] | None, cases: pd.DataFrame) -> list[dict[str, Any]]:
    """The grid's cases without a row."""
    if grid is None:
        return []
    done = {case_key(row) for _, row in cases.iterrows()}
    return [key for key in grid if case_key(key) not in done]


def missing_line(missing: list[dict[str, Any]], total: int, run_dir: Path) -> str | None:
    """The warning a report gives about the cases a run never measured."""
    if not missing:
        return None
    names = [f"{k['backbone']} {k['attention']} batch {k['batch_size']} {k['resolution']} px" for k in missing]
    more = f" and {len(names) - MISSING_LISTED} more" if len(names) > MISSING_LISTED else ""
    return (
        f"{len(missing)} of the grid's {total} cases have no row: {', '.join(names[:MISSING_LISTED])}{more}; "
        f"`attnbench run --resume {run_dir}` measures them"
    )
