"""Writing a run directory: created once, then rows appended as cases finish (samples before their row)."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.errors import ResultsError
from attnbench.results.reader import read_run
from attnbench.results.schema import (
    CASE_COLUMNS, CASES_FILE, META_FILE, SAMPLE_COLUMNS, SAMPLES_FILE, SCHEMA_VERSION, SITE_COLUMNS, SITES_FILE,
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sorts by start time; the random suffix keeps two runs started in the same second apart."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def atomic_write_text(path: Path, text: str) -> None:
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


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


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
    def reopen(cls, path: Path) -> RunWriter:
        """Continues an existing run. Samples left without a case row by a killed process are dropped, and
        a run of an older schema is rewritten in the current one, so that new rows line up with the old."""
        run = read_run(path)
        writer = cls(Path(path), dict(run.meta))
        migrated = writer.meta.pop("migrated_from", None) is not None
        samples = run.samples[run.samples.columns.intersection(SAMPLE_COLUMNS)]
        if migrated or len(samples) < run.samples_on_disk:
            atomic_write_text(writer.path / SAMPLES_FILE, samples.to_csv(index=False, lineterminator="\n"))
        if migrated or _header(writer.path / CASES_FILE)[: len(CASE_COLUMNS)] != CASE_COLUMNS:
            # Also when columns were added since the run started: new rows must line up with the header.
            atomic_write_text(writer.path / CASES_FILE, run.cases.to_csv(index=False, lineterminator="\n"))
        if migrated:
            writer.meta["schema_version"] = SCHEMA_VERSION
        writer.update_meta(status="running")
        return writer

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        atomic_write_text(self.path / META_FILE, json.dumps(self.meta, indent=2, default=str) + "\n")

    def append_case(
        self, row: dict[str, Any], samples: list[float] | None = None, wall_samples: list[float] | None = None,
        rounds: list[int] | None = None,
    ) -> None:
        """Samples first: a case row only exists once its raw timings are on disk.

        `wall_samples` and `rounds`, when given, pair with `samples` repeat by repeat.
        """
        if samples:
            walls = wall_samples or [None] * len(samples)
            indices = rounds or [None] * len(samples)
            if not len(walls) == len(indices) == len(samples):
                raise ValueError(f"{len(walls)} wall samples and {len(indices)} rounds for {len(samples)} samples")
            lines = "".join(
                _csv_line(
                    SAMPLE_COLUMNS,
                    {"case_id": row["case_id"], "repeat": i, "round": index, "latency_ms": value, "wall_ms": wall},
                )
                for i, (value, wall, index) in enumerate(zip(samples, walls, indices))
            )
            _append(self.path / SAMPLES_FILE, SAMPLE_COLUMNS, lines)
        _append(self.path / CASES_FILE, CASE_COLUMNS, _csv_line(CASE_COLUMNS, row))

    def append_sites(self, rows: list[dict[str, Any]]) -> None:
        """A case's attention instances, in one append; the file appears with the first case that has any."""
        _append(self.path / SITES_FILE, SITE_COLUMNS, "".join(_csv_line(SITE_COLUMNS, row) for row in rows))

    def finish(self, status: str = "complete") -> None:
        self.update_meta(status=status, end_time=utc_now())
