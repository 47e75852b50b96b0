"""Reading a run directory back as pandas frames, with runs of older schemas migrated on read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.errors import ResultsError
from attnbench.results.schema import (
    CASE_COLUMNS, CASES_FILE, KEY_DEFAULTS, META_FILE, REQUIRED_CASE_COLUMNS, SAMPLE_COLUMNS, SAMPLES_FILE,
    SCHEMA_VERSION, SITE_COLUMNS, SITES_FILE, format_options, parse_options,
)

TEXT_COLUMNS = {
    "case_id": str, "error": str, "options": str, "placement": str, "host": str, "device_name": str, "worker": str,
}


@dataclass
class Run:
    """A run directory read back: meta, cases, raw samples and attention instances."""

    path: Path
    meta: dict[str, Any]
    cases: pd.DataFrame
    samples: pd.DataFrame
    sites: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SITE_COLUMNS))
    samples_on_disk: int = 0
    """Rows of samples.csv, including orphans the reader left out."""

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    @property
    def suite_name(self) -> str:
        return self.meta.get("suite", {}).get("name", "?")

    def samples_of(self, case_id: str) -> list[float]:
        return self.samples.loc[self.samples["case_id"] == case_id, "latency_ms"].tolist()


def is_run_dir(path: Path) -> bool:
    return (path / META_FILE).is_file()


def read_run(path: Path) -> Run:
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"run directory {path} does not exist")
    if not is_run_dir(path):
        raise ResultsError(f"{path} is not a run directory: no {META_FILE}")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path / META_FILE}: corrupted JSON ({error})") from None
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise ResultsError(f"{path / META_FILE}: no schema_version")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema {version} is newer than this attnbench reads ({SCHEMA_VERSION}); upgrade attnbench"
        )
    cases = _read_csv(path / CASES_FILE, REQUIRED_CASE_COLUMNS, CASE_COLUMNS)
    cases[["options", "placement"]] = cases[["options", "placement"]].fillna("")  # `none` has neither
    if version < SCHEMA_VERSION:
        cases = migrate_cases(cases, version)
        meta = {**meta, "migrated_from": version}
    cases = in_grid_order(cases, meta.get("case_order"))
    samples = _read_csv(path / SAMPLES_FILE, ["case_id", "repeat", "latency_ms"], SAMPLE_COLUMNS)
    on_disk = len(samples)
    # Samples whose case row never landed (the process died in between) belong to no case.
    samples = samples[samples["case_id"].isin(set(cases["case_id"]))].reset_index(drop=True)
    sites_path = path / SITES_FILE
    if not sites_path.exists():  # no case measured complexity
        return Run(path, meta, cases, samples, samples_on_disk=on_disk)
    sites = _read_csv(sites_path, SITE_COLUMNS, SITE_COLUMNS)
    # Likewise for instances; a case re-run on resume wrote its instances again, and the last write wins.
    sites = sites[sites["case_id"].isin(set(cases["case_id"]))]
    sites = sites.drop_duplicates(["case_id", "path"], keep="last").reset_index(drop=True)
    return Run(path, meta, cases, samples, sites, on_disk)


def in_grid_order(cases: pd.DataFrame, order: list[str] | None) -> pd.DataFrame:
    """Rows in the order the run planned its cases (meta.json's `case_order`): workers finish groups in any
    order and a resume appends what was missing, but tables read in grid order. Rows of cases the order
    does not know keep their place after the others."""
    if not order:
        return cases
    position = {case_id: index for index, case_id in enumerate(order)}
    rank = cases["case_id"].map(position).fillna(len(position))
    return cases.iloc[rank.to_numpy().argsort(kind="stable")].reset_index(drop=True)


def migrate_cases(cases: pd.DataFrame, version: int) -> pd.DataFrame:
    """Schema 1 -> 2: `options` held only the options the suite gave and `placement` only an explicit one;
    both become what the case ran with, resolved with today's module defaults and placements (a module
    no longer registered keeps what was recorded). Key columns added since read as their default."""
    from attnbench.backbones import resolve_placement
    from attnbench.modules import ATTENTION, BASELINE

    cases = cases.copy()
    for column, default in KEY_DEFAULTS.items():
        cases[column] = cases[column].where(cases[column].notna(), default)
    for index, row in cases.iterrows():
        key = row["attention_key"]
        if key == BASELINE or key not in ATTENTION:
            continue
        spec = ATTENTION.get(key)
        try:
            resolved = spec.resolve_options(parse_options(row["options"]))
            placement = resolve_placement(row["backbone"], spec, row["placement"] or None)
        except Exception:  # a backbone or option that no longer exists: keep the recorded values
            continue
        cases.loc[index, ["options", "placement"]] = [format_options(resolved.items()), placement]
    return cases


def _read_csv(path: Path, required: list[str], columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ResultsError(f"{path}: missing")
    try:
        frame = pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path}: corrupted CSV ({error})") from None
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: empty, expected a header row") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}")
    return frame.reindex(columns=[*columns, *(c for c in frame.columns if c not in columns)])


def find_runs(root: Path) -> list[Path]:
    """Run directories directly below `root`, oldest first (run ids sort by time)."""
    root = Path(root)
    if not root.exists():
        raise ResultsError(f"results path {root} does not exist")
    if is_run_dir(root):
        return [root]
    if not root.is_dir():
        raise ResultsError(f"results path {root} is neither a run directory nor a folder of runs")
    return sorted(path for path in root.iterdir() if path.is_dir() and is_run_dir(path))
