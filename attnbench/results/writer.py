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
from attnbench.results.lock import RunLock
from attnbench.results.reader import Run, read_run
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
    """Creates a run directory and appends rows as cases finish; holds the directory's lock (results.lock)
    from create() or reopen() to finish() or close()."""

    def __init__(self, path: Path, meta: dict[str, Any], lock: RunLock):
        self.path = path
        self.meta = meta
        self.lock = lock

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
        writer = cls(path, {"schema_version": SCHEMA_VERSION, "run_id": run_id, **meta}, RunLock.acquire(path))
        try:
            writer.update_meta(status="running", start_time=utc_now())
            _append(path / CASES_FILE, CASE_COLUMNS, "")
            _append(path / SAMPLES_FILE, SAMPLE_COLUMNS, "")
        except BaseException:
            writer.close()
            raise
        return writer

    @classmethod
    def reopen(cls, path: Path) -> tuple[RunWriter, Run]:
        """Locks an existing run and reads it as it is now (bad lines left out, rows written twice
        counted once); nothing is changed until `repair`."""
        lock = RunLock.acquire(Path(path))
        try:
            run = read_run(path, repair=True)
            _check_appendable(Path(path))
        except BaseException:
            lock.release()
            raise
        return cls(Path(path), dict(run.meta), lock), run

    def repair(self, run: Run) -> None:
        """Rewrites what new rows cannot be appended to as they are: a run of an older schema in the
        current one, cases.csv without the rows the reader left out, samples.csv without samples of no
        case (a killed process, a dropped row) and attention_sites.csv likewise."""
        migrated = self.meta.pop("migrated_from", None) is not None
        samples = run.samples[run.samples.columns.intersection(SAMPLE_COLUMNS)]
        stale_header = _header(self.path / CASES_FILE)[: len(CASE_COLUMNS)] != CASE_COLUMNS
        if migrated or run.dropped or len(samples) < run.samples_on_disk:
            atomic_write_text(self.path / SAMPLES_FILE, samples.to_csv(index=False, lineterminator="\n"))
        if migrated or run.dropped or stale_header:
            # Also when columns were added since the run started: new rows must line up with the header.
            atomic_write_text(self.path / CASES_FILE, run.cases.to_csv(index=False, lineterminator="\n"))
            if (self.path / SITES_FILE).exists():
                atomic_write_text(self.path / SITES_FILE, run.sites.to_csv(index=False, lineterminator="\n"))
        if migrated:
            self.meta["schema_version"] = SCHEMA_VERSION

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

    def finish(self, status: str = "complete", **fields: Any) -> None:
        """The run's last words in meta.json (its status, end time and any `fields`); then the lock goes."""
        try:
            self.update_meta(status=status, end_time=utc_now(), **fields)
        finally:
            self.close()

    def close(self) -> None:
        """Lets go of the run directory, for the next writer."""
        self.lock.release()


def _check_appendable(path: Path) -> None:
    """The files a resume appends to and rewrites, checked before anything is measured: a read-only
    cases.csv found after a group's timing would cost that group and leave its samples behind."""
    for name in (META_FILE, CASES_FILE, SAMPLES_FILE, SITES_FILE):
        file = path / name
        if not file.exists():
            continue
        try:
            with file.open("a"):
                pass
        except OSError as error:
            raise ResultsError(f"{file}: cannot be written ({error.strerror}); a resume appends to it") from None
