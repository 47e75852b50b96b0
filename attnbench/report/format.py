"""Numbers and Markdown tables as a reader sees them: three significant figures, SI prefixes, signs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Cell = str


def sig3(value: object) -> Cell:
    """Three significant figures without scientific notation; thousands separated."""
    if value is None or isinstance(value, str):
        return value or ""
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return ""
    if number == 0:
        return "0"
    decimals = 2 - math.floor(math.log10(abs(number)))
    rounded = round(number, decimals)
    return f"{rounded:,.0f}" if decimals <= 0 else f"{rounded:.{decimals}f}"


def fmt_number(value: object) -> Cell:
    """Counts as integers, other numbers to three significant figures, empty for missing."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return sig3(value)


def si(value: object, unit: str = "") -> Cell:
    """Large counts with an SI prefix (11.7 M, 4.11 G): a reader compares magnitudes, not digits."""
    if value is None or pd.isna(value):
        return ""
    number = float(value)  # type: ignore[arg-type]
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{sig3(number / scale)} {prefix}{unit}"
    return f"{fmt_number(int(number)) if number.is_integer() else sig3(number)} {unit}".rstrip()


def signed(value: object) -> Cell:
    """A percentage with its sign: +5.00 costs more than the baseline, -1.20 less."""
    text = sig3(value)
    return f"+{text}" if text and not text.startswith("-") and text != "0" else text


def cell(text: object) -> Cell:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table: its column names as header, numbers by fmt_number."""
    rows = [[fmt_number(value) for value in values] for values in frame.itertuples(index=False)]
    return md_table([str(column) for column in frame.columns], rows)


def plural(count: object, noun: str, many: str | None = None) -> str:
    """`1 warm-up call`, `3 warm-up calls`: a count with its noun in the right number."""
    return f"{count} {noun if str(count) == '1' else many or noun + 's'}"


def words(values: list[object]) -> str:
    return ", ".join(str(v) for v in values)
