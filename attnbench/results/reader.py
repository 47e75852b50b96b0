"""Reading a run directory back as pandas frames, with runs of older schemas migrated on read."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.errors import ResultsError
from attnbench.results.lock import writer_alive
from attnbench.results.schema import (
    CASE_COLUMNS, CASE_KEY, CASES_FILE, KEY_DEFAULTS, META_FILE, REQUIRED_CASE_COLUMNS, SAMPLE_COLUMNS, SAMPLES_FILE,
    SCHEMA_VERSION, SITE_COLUMNS, SITES_FILE, format_options, parse_options,
)
from attnbench.results.validate import BadLine, checked_lines

TEXT_COLUMNS = {
    "case_id": str, "error": str, "options": str, "placement": str, "host": str, "device_name": str, "worker": str,
    "runtime": str, "runtime_settings": str,
}
PROCESS_GONE = "interrupted (process gone)"
"""The status of a run whose meta.json says `running` while no process holds its lock: it was killed."""


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
    warnings: list[str] = field(default_factory=list)
    """What the reader found and repaired in memory (rows written twice, bad lines dropped on resume),
    one line each, for the commands and the report to show."""
    dropped: int = 0
    """Lines the reader left out: bad lines of any file, and case rows written twice or of a case with a
    bad line elsewhere. A resume rewrites the files without them."""

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


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of the run directory at `path`, of a schema this attnbench reads."""
    path = Path(path)
    if not path.exists():
        raise ResultsError(f"run directory {path} does not exist")
    if not is_run_dir(path):
        raise ResultsError(f"{path} is not a run directory: no {META_FILE}")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path / META_FILE}: corrupted JSON ({error})") from None
    except OSError as error:
        raise ResultsError(f"{path / META_FILE}: cannot be read ({error.strerror})") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise ResultsError(f"{path / META_FILE}: no schema_version")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema {version} is newer than this attnbench reads ({SCHEMA_VERSION}); upgrade attnbench"
        )
    _check_meta_types(path / META_FILE, meta)
    return meta


META_TYPES: dict[str, tuple[type, type | None]] = {
    "run_id": (str, None), "status": (str, None), "suite": (dict, None), "left_out": (list, dict),
    "warnings": (list, str), "calibration": (dict, None), "case_order": (list, str), "resumed": (list, str),
    "merged_from": (list, dict), "executor": (dict, None),
}
"""meta.json's keys that commands read, as (type, type of each item for lists); JSON names them below."""

JSON_NAMES = {str: "a string", dict: "an object", list: "a list"}


def _check_meta_types(where: Path, meta: dict[str, Any]) -> None:
    """A meta.json edited by hand (or cut by another tool) fails here, in one line, not later in a report."""
    if "run_id" not in meta:
        raise ResultsError(f"{where}: no run_id")
    for key, (kind, item) in META_TYPES.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise ResultsError(f"{where}: {key} must be {JSON_NAMES[kind]}, got {type(value).__name__} {value!r:.40}")
        if item is not None and not all(isinstance(element, item) for element in value):
            raise ResultsError(f"{where}: every item of {key} must be {JSON_NAMES[item]}")


def read_run(path: Path, repair: bool = False) -> Run:
    """The run directory at `path`. A bad line in its CSV files (schema's column kinds) is a ResultsError
    naming file, line and column; with `repair` (a resume) it is left out, with the case it belongs to,
    so that the case is measured again."""
    path = Path(path)
    meta = read_meta(path)
    version = meta["schema_version"]
    writing = writer_alive(path)
    if meta.get("status") == "running" and writing is False:
        meta = _gone(path, meta)
    bad: list[BadLine] = []
    # A resume reads under its own lock: a line without its line end is then a cut one, never in flight.
    read = partial(_read_csv, bad=bad, writing=bool(writing) and not repair)
    cases = read(path / CASES_FILE, REQUIRED_CASE_COLUMNS, CASE_COLUMNS)
    cases[["options", "placement"]] = cases[["options", "placement"]].fillna("")  # `none` has neither
    if version < SCHEMA_VERSION:
        cases = migrate_cases(cases, version) if version < 2 else cases
        cases = runtime_from_compile(cases)
        meta = {**meta, "migrated_from": version}
    samples = read(path / SAMPLES_FILE, ["case_id", "repeat", "latency_ms"], SAMPLE_COLUMNS)
    sites_path = path / SITES_FILE
    # No sites file: no case measured complexity.
    sites = read(sites_path, SITE_COLUMNS, SITE_COLUMNS) if sites_path.exists() else None
    warnings = _bad_lines(bad, repair)
    # A case with a bad line anywhere is measured again: its row goes, and its samples and sites with it.
    remeasured = {line.case_id for line in bad if line.case_id}
    rows = len(cases)
    cases = cases[~cases["case_id"].isin(remeasured)]
    cases, twice = _last_rows(cases)
    cases = in_grid_order(cases, meta.get("case_order"))  # workers finish groups in any order
    if twice:
        warnings.append(
            f"{path / CASES_FILE}: {twice} case(s) have more than one row (two processes wrote the run at "
            "once, or a row was copied in): the last row of each is used"
        )
    on_disk = len(samples)
    # Samples whose case row never landed (the process died in between) belong to no case.
    samples = _last_samples(samples[samples["case_id"].isin(set(cases["case_id"]))])
    run = Run(path, meta, cases, samples, samples_on_disk=on_disk, warnings=warnings,
              dropped=len(bad) + rows - len(cases))
    if sites is not None:
        # Likewise for instances; a case re-run on resume wrote its instances again, and the last write wins.
        sites = sites[sites["case_id"].isin(set(cases["case_id"]))]
        run.sites = sites.drop_duplicates(["case_id", "path"], keep="last").reset_index(drop=True)
    return run


def _gone(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """meta.json of a run whose writer is gone, read again: a writer that ended just now has rewritten it
    before it let go of the lock."""
    try:
        again = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError):
        again = meta
    return {**again, "status": PROCESS_GONE} if again.get("status") == "running" else again


def _bad_lines(bad: list[BadLine], repair: bool) -> list[str]:
    """Bad lines are an error when reading for a report or a comparison; a resume leaves them out."""
    if not bad:
        return []
    more = f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""
    if not repair:
        raise ResultsError(
            f"{bad[0]}{more}; `attnbench run --resume {bad[0].path.parent}` drops such rows and measures "
            "their cases again"
        )
    return [f"{line}: dropped; its case is measured again" if line.case_id else f"{line}: dropped" for line in bad]


def _last_rows(cases: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per case, its last (a case written twice has its last measurement last); how many cases
    had more than one. A case is its case key: two rows of one key under different case ids (a row
    copied in and its id edited) are one case too."""
    key = [c for c in CASE_KEY if c in cases]
    earlier = cases["case_id"].duplicated(keep="last") | cases.duplicated(subset=key, keep="last")
    twice = len(cases[earlier].drop_duplicates(subset=key))
    return cases[~earlier].reset_index(drop=True), twice


def _last_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """The last block of each case's samples. A case's samples are appended as one block from repeat 0,
    so a case measured twice (two writers, orphans of a killed process) has a block per measurement."""
    block = pd.to_numeric(samples["repeat"]).eq(0).groupby(samples["case_id"]).cumsum()
    last = block.groupby(samples["case_id"]).transform("max")
    return samples[block == last].reset_index(drop=True)


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


def runtime_from_compile(cases: pd.DataFrame) -> pd.DataFrame:
    """Schema 2 -> 3: the key's `compile` (true: torch.compile with the suite's backend) becomes `runtime`
    (inductor, else eager) and `compile_s` becomes `runtime_build_s`."""
    cases = cases.copy()
    compiled = cases["compile"].map(lambda flag: str(flag).strip().lower() in ("true", "1", "1.0")) \
        if "compile" in cases else pd.Series(False, index=cases.index)
    cases["runtime"] = compiled.map({True: "inductor", False: KEY_DEFAULTS["runtime"]})
    if "compile_s" in cases:
        cases["runtime_build_s"] = cases["compile_s"]
    return cases.drop(columns=[c for c in ("compile", "compile_s") if c in cases])


def _read_csv(
    path: Path, required: list[str], columns: list[str], bad: list[BadLine], writing: bool
) -> pd.DataFrame:
    """The file's rows without its bad lines, which are added to `bad` (validate.checked_lines)."""
    if not path.is_file():
        raise ResultsError(f"{path}: missing")
    try:
        text, found = checked_lines(path, path.read_text(), writing)
        bad += found
        frame = pd.read_csv(io.StringIO(text), dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path}: corrupted CSV ({error})") from None
    except OSError as error:
        raise ResultsError(f"{path}: cannot be read ({error.strerror})") from None
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
