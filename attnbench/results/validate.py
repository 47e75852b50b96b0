"""A run's CSV files checked line by line before pandas reads them.

The writer appends whole lines, but a file can still be cut (a copy interrupted, a full disk, an edit),
and a cut line reads as numbers: `...,True,1` became a median of 1 ms. Each line must have the header's
number of fields, end with a line end, and hold values of its columns' kinds (schema.py); a bad line is
named by file, line and column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from attnbench.results.schema import FLAG_COLUMNS, FLAG_VALUES, INTEGER_COLUMNS, NUMBER_COLUMNS, STATUSES


@dataclass(frozen=True)
class BadLine:
    path: Path
    line: int
    problem: str
    case_id: str
    """The line's case, where its case_id field is whole ("" otherwise)."""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


def _number(value: str) -> str | None:
    try:
        float(value)
    except ValueError:
        return "is not a number"
    return None


def _integer(value: str) -> str | None:
    try:
        whole = float(value).is_integer()
    except (ValueError, OverflowError):
        return "is not an integer"
    return None if whole else "is not an integer"


def _duration(value: str) -> str | None:
    """A time: a finite number, not below zero (NaN is how a hand edit or a broken timer shows)."""
    try:
        number = float(value)
    except ValueError:
        return "is not a number"
    return None if math.isfinite(number) and number >= 0 else "is not a time (a finite number >= 0)"


def _count(value: str) -> str | None:
    """A grid size: a whole number from 1 up."""
    return _integer(value) or (None if float(value) >= 1 else "is not a count (an integer >= 1)")


def _flag(value: str) -> str | None:
    return None if value.strip().lower() in FLAG_VALUES else "is not true or false"


def _status(value: str) -> str | None:
    return None if value in STATUSES else f"is not a status ({', '.join(STATUSES)})"


Check = Callable[[str], "str | None"]

COUNT_COLUMNS = frozenset({"batch_size", "resolution"})
DURATION_COLUMNS = frozenset({"latency_ms", "wall_ms", "latency_ms_median", "wall_ms_median"})
"""Columns whose values must also make sense, not only parse: a batch of -3 or a latency of -5 ms is an
edited or corrupted file, not a measurement."""


def _check_of(column: str) -> Check | None:
    if column == "status":
        return _status
    if column in COUNT_COLUMNS:
        return _count
    if column in DURATION_COLUMNS:
        return _duration
    if column in INTEGER_COLUMNS:
        return _integer
    if column in NUMBER_COLUMNS:
        return _number
    return _flag if column in FLAG_COLUMNS else None


def _physical_lines(text: str) -> Iterator[str]:
    """The text's lines with their line ends; only "\\n" ends a line (a value may hold a "\\r")."""
    pieces = text.split("\n")
    for piece in pieces[:-1]:
        yield piece + "\n"
    if pieces[-1]:
        yield pieces[-1]  # no line end: the file was cut here


def checked_lines(path: Path, text: str, writing: bool = False) -> tuple[str, list[BadLine]]:
    """`text` without its bad lines (the header is kept), and what is wrong with each of them. While a
    process is `writing` the file, a last line without its line end is one being appended: it is left out
    without complaint."""
    lines = list(_physical_lines(text))
    if writing and len(lines) > 1 and not lines[-1].endswith("\n"):
        lines.pop()
        text = "".join(lines)
    reader = csv.reader(iter(lines))
    header = next(reader, None)
    if header is None:
        return text, []
    checks = [(index, column, check) for index, column in enumerate(header) if (check := _check_of(column))]
    bad: list[BadLine] = []
    dropped: set[int] = set()
    start = reader.line_num
    for record in reader:
        end = reader.line_num
        problem = _problem(header, record, checks)
        if problem is None and end == len(lines) and not lines[-1].endswith("\n"):
            problem = "the line is cut off (no line end)"
        if problem is not None:
            # The first field is whole when a separator follows it.
            case_id = record[0] if header[0] == "case_id" and len(record) > 1 else ""
            bad.append(BadLine(path, start + 1, problem, case_id))
            dropped.update(range(start, end))
        start = end
    if not bad:
        return text, bad
    return "".join(line for index, line in enumerate(lines) if index not in dropped), bad


def _problem(header: list[str], record: list[str], checks: list[tuple[int, str, Check]]) -> str | None:
    if len(record) != len(header):
        cut = " (the line is cut off)" if len(record) < len(header) else ""
        return f"{len(record)} fields where the header has {len(header)}{cut}"
    for index, column, check in checks:
        value = record[index]
        if value == "" and column != "status":
            continue  # a metric not measured
        found = check(value)
        if found:
            return f"column {column}: value {value!r} {found}"
    return None
