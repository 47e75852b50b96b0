"""The run directory: meta.json, cases.csv (one row per case), samples.csv (raw timings). Append-only."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.errors import ResultsError

SCHEMA_VERSION = 1
META_FILE, CASES_FILE, SAMPLES_FILE = "meta.json", "cases.csv", "samples.csv"
SITES_FILE = "attention_sites.csv"

CASE_COLUMNS = [
    # what the case is
    "case_id",
    "backbone",
    "attention",
    "attention_key",
    "options",
    "placement",
    "batch_size",
    "resolution",
    "dtype",
    "mode",
    "device",
    "channels_last",
    "compile",
    "status",
    "error",
    # complexity
    "params",
    "params_attention",
    "macs",
    "flops",
    "bytes_min",
    "bytes_eager",
    "arithmetic_intensity",
    "macs_attention",
    "flops_attention",
    "bytes_min_attention",
    "bytes_eager_attention",
    "uncounted_ops",
    "formula_ok",
    # latency (statistics derived from samples.csv)
    "latency_ms_median",
    "latency_ms_iqr",
    "latency_ms_p10",
    "latency_ms_p90",
    "latency_ms_ci_low",
    "latency_ms_ci_high",
    "wall_ms_median",
    "repeats",
    "l2_flush",
    "noisy",
    "throughput_ips",
    "compile_s",
    "achieved_bandwidth_gbs",
    "bandwidth_fraction",
    # memory
    "peak_mem_mib",
    "peak_mem_reserved_mib",
    # attention modules alone
    "module_latency_ms_median",
    # profile
    "attention_time_share",
    "kernel_count",
    "attention_top_ops",
    "duration_s",
]
SAMPLE_COLUMNS = ["case_id", "repeat", "latency_ms", "wall_ms"]
SITE_COLUMNS = [
    "case_id",
    "backbone",
    "attention",
    "path",
    "stage",
    "channels",
    "sites",
    "formula_params",
    "counted_params",
    "ok",
]
"""attention_sites.csv: one row per attention instance of a case (the parameter-formula check); `sites`
is the number of insertion points sharing the instance."""
STATUSES = ("ok", "oom", "error", "skipped", "timeout")
REQUIRED_CASE_COLUMNS = [*CASE_COLUMNS[: CASE_COLUMNS.index("device") + 1], "status", "error"]
"""A run missing these cannot be read; any later column may be absent (a metric added since) and reads as empty."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sorts by start time; the random suffix keeps two runs started in the same second apart."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _csv_line(columns: list[str], row: dict[str, Any]) -> str:
    buffer = io.StringIO()
    csv.DictWriter(buffer, fieldnames=columns, extrasaction="raise", lineterminator="\n").writerow(
        {column: "" if row.get(column) is None else row.get(column) for column in columns}
    )
    return buffer.getvalue()


def _append(path: Path, columns: list[str], lines: str) -> None:
    """One write of whole lines with O_APPEND, then fsync: a killed process never leaves half a row."""
    new = not path.exists()
    header = _csv_line(columns, dict(zip(columns, columns))) if new else ""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (header + lines).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


class RunWriter:
    """Creates a run directory and appends rows as cases finish."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.meta = meta

    @classmethod
    def create(cls, results_root: Path, meta: dict[str, Any]) -> RunWriter:
        if results_root.exists() and not results_root.is_dir():
            raise ResultsError(f"results path {results_root} is a file; expected a directory")
        try:
            results_root.mkdir(parents=True, exist_ok=True)
            run_id = new_run_id()
            path = results_root / run_id
            path.mkdir()
        except OSError as error:
            raise ResultsError(f"cannot create a run directory in {results_root}: {error.strerror}") from None
        writer = cls(path, {"schema_version": SCHEMA_VERSION, "run_id": run_id, **meta})
        writer.update_meta(status="running", start_time=utc_now())
        _append(path / CASES_FILE, CASE_COLUMNS, "")
        _append(path / SAMPLES_FILE, SAMPLE_COLUMNS, "")
        return writer

    @classmethod
    def reopen(cls, path: Path, meta: dict[str, Any]) -> RunWriter:
        """Continues an existing run; samples left without a case row by a killed process are dropped."""
        writer = cls(path, dict(meta))
        writer._drop_orphan_samples()
        writer.update_meta(status="running")
        return writer

    def _drop_orphan_samples(self) -> None:
        cases = pd.read_csv(self.path / CASES_FILE, usecols=["case_id"], dtype={"case_id": str})
        samples = pd.read_csv(self.path / SAMPLES_FILE, dtype={"case_id": str})
        kept = samples[samples["case_id"].isin(set(cases["case_id"]))]
        if len(kept) < len(samples):
            _atomic_write_text(self.path / SAMPLES_FILE, kept.to_csv(index=False, lineterminator="\n"))

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        _atomic_write_text(self.path / META_FILE, json.dumps(self.meta, indent=2, default=str) + "\n")

    def append_case(
        self, row: dict[str, Any], samples: list[float] | None = None, wall_samples: list[float] | None = None
    ) -> None:
        """Samples first: a case row only exists once its raw timings are on disk.

        `wall_samples`, when given, pairs with `samples` repeat by repeat.
        """
        if samples:
            walls = wall_samples or [None] * len(samples)
            if len(walls) != len(samples):
                raise ValueError(f"{len(walls)} wall samples for {len(samples)} latency samples")
            lines = "".join(
                _csv_line(
                    SAMPLE_COLUMNS,
                    {"case_id": row["case_id"], "repeat": i, "latency_ms": value, "wall_ms": wall},
                )
                for i, (value, wall) in enumerate(zip(samples, walls))
            )
            _append(self.path / SAMPLES_FILE, SAMPLE_COLUMNS, lines)
        _append(self.path / CASES_FILE, CASE_COLUMNS, _csv_line(CASE_COLUMNS, row))

    def append_sites(self, rows: list[dict[str, Any]]) -> None:
        """A case's attention instances, in one append; the file appears with the first case that has any."""
        _append(self.path / SITES_FILE, SITE_COLUMNS, "".join(_csv_line(SITE_COLUMNS, row) for row in rows))

    def finish(self, status: str = "complete") -> None:
        self.update_meta(status=status, end_time=utc_now())


@dataclass
class Run:
    """A run directory read back: meta, cases, raw samples and attention instances."""

    path: Path
    meta: dict[str, Any]
    cases: pd.DataFrame
    samples: pd.DataFrame
    sites: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SITE_COLUMNS))

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
            f"{path}: results schema {version} is newer than this attnbench reads ({SCHEMA_VERSION}); "
            "upgrade attnbench"
        )
    cases = _read_csv(path / CASES_FILE, REQUIRED_CASE_COLUMNS, CASE_COLUMNS)
    samples = _read_csv(path / SAMPLES_FILE, SAMPLE_COLUMNS[:3], SAMPLE_COLUMNS)
    # Samples whose case row never landed (the process died in between) belong to no case.
    samples = samples[samples["case_id"].isin(set(cases["case_id"]))].reset_index(drop=True)
    sites_path = path / SITES_FILE
    if not sites_path.exists():  # no case measured complexity
        return Run(path, meta, cases, samples)
    sites = _read_csv(sites_path, SITE_COLUMNS, SITE_COLUMNS)
    # Likewise for instances; a case re-run on resume wrote its instances again, and the last write wins.
    sites = sites[sites["case_id"].isin(set(cases["case_id"]))]
    sites = sites.drop_duplicates(["case_id", "path"], keep="last").reset_index(drop=True)
    return Run(path, meta, cases, samples, sites)


def _read_csv(path: Path, required: list[str], columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise ResultsError(f"{path}: missing")
    try:
        frame = pd.read_csv(path, dtype={"case_id": str, "error": str, "options": str})
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
