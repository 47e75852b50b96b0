"""A run as the report reads it: its files, and the tables derived from them, each computed once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.accuracy import AccuracyRow, published_rows
from attnbench.config import GateConfig
from attnbench.report import missing, tables
from attnbench.results import Run
from attnbench.runtimes import EAGER


@dataclass(frozen=True)
class ReportOptions:
    """What a report judges and joins by, beyond the runs: the project's gate thresholds (a comparison of
    two runs) and the accuracy table (the lab's rows first, then the published ones)."""

    gate: GateConfig = GateConfig()
    accuracy: tuple[AccuracyRow, ...] = field(default_factory=published_rows)


class RunView:
    """What every part of a run's report reads. The joins onto `none` are computed here, once, and a part
    that derives a table for several outputs (a section and its figure) keeps it in `memo`."""

    def __init__(self, run: Run, options: ReportOptions | None = None):
        self.run = run
        self.options = options or ReportOptions()
        self._memo: dict[str, Any] = {}

    def memo(self, name: str, derive: Callable[[], Any]) -> Any:
        if name not in self._memo:
            self._memo[name] = derive()
        return self._memo[name]

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def meta(self) -> dict[str, Any]:
        return self.run.meta

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def suite_name(self) -> str:
        return self.run.suite_name

    @property
    def cases(self) -> pd.DataFrame:
        return self.run.cases

    @property
    def samples(self) -> pd.DataFrame:
        return self.run.samples

    @property
    def sites(self) -> pd.DataFrame:
        return self.run.sites

    @cached_property
    def normalized(self) -> pd.DataFrame:
        return tables.normalized(self.run.cases)

    @cached_property
    def overhead(self) -> pd.DataFrame:
        """Finished cases with their overheads over `none` (tables.with_overhead)."""
        return tables.with_overhead(self.run.cases)

    @cached_property
    def shares(self) -> pd.DataFrame:
        return tables.shares_of(self.overhead)

    @cached_property
    def statuses(self) -> dict[tuple, str]:
        """Status of each unfinished case by (table setting, attention, batch), to fill cells a table lacks."""
        bad = self.normalized[self.normalized["status"] != "ok"]
        return {
            (tuple(r[c] for c in tables.TABLE_SETTING), r["attention"], r["batch_size"]): r["status"]
            for _, r in bad.iterrows()
        }

    @cached_property
    def grid(self) -> list[dict[str, Any]] | None:
        """The case keys of the grid the run was asked for (None when its suite cannot be rebuilt)."""
        return missing.grid_keys(self.meta)

    @cached_property
    def missing(self) -> list[dict[str, Any]]:
        """The grid's cases without a row: the run stopped before them."""
        return missing.missing_keys(self.grid, self.run.cases)

    @property
    def total(self) -> int:
        """Cases of the grid; where it cannot be rebuilt, the rows."""
        return len(self.grid) if self.grid is not None else len(self.run.cases)

    @cached_property
    def trains(self) -> bool:
        """Whether any case timed a training step rather than a forward."""
        return bool((self.run.cases["mode"] == "train").any())

    @cached_property
    def runtimes(self) -> list[str]:
        """The runtimes other than eager whose steps cases timed, in the order the run has them."""
        return [name for name in self.run.cases["runtime"].dropna().unique() if name != EAGER]
