"""Tables laid out for the terminal they are printed in, one rule for all of attnbench's tables.

Columns carry a priority: when the width runs out, the columns of the highest priority number go first,
and free text gets narrower; labels (a module, a case path, a status) are never cut or broken. When even
the columns that are always shown do not fit, each row becomes one plain line instead of a table. The
layout is decided when the table is printed, from the width the console has (a terminal's, `COLUMNS`, or
`Console(width=...)`), so one table reads at 80 columns and shows everything at 200. Print it with
`crop=False`: a fallback line longer than the width then reaches a pipe whole.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

Kind = Literal["label", "number", "text", "clip"]
"""label and number: never cut or wrapped (a label may hold several lines); text: wraps at spaces (a word
wider than the column is folded); clip: one line, cut with an ellipsis (a reason, a note)."""


@dataclass(frozen=True)
class Column:
    header: str
    kind: Kind = "label"
    priority: int = 0
    """0: always shown; when the width runs out, the columns of the highest number go first, together."""
    min_width: int = 10
    """The narrowest a text or clip column is made (or its widest cell, when that is narrower)."""


def _lines(text: str) -> list[str]:
    return text.split("\n") or [""]


def _longest_word(text: str) -> int:
    return max((cell_len(word) for line in _lines(text) for word in line.split()), default=0)


@dataclass(frozen=True)
class _Sizes:
    least: int
    """Narrowest without breaking what must stay whole."""
    wanted: int
    """Wide enough to read well: a label whole (its header may wrap), text wrapped at its narrowest, a
    clipped note at twice that."""
    natural: int
    """Wide enough for every cell and the header on one line."""


FOLDED_WORD = 24
"""A piece of free text (a word, or a part of a hyphenated word) longer than this may be folded; shorter
ones are never broken."""
HYPHEN_BREAK = re.compile(r"(?<=\w-)(?=\w)")
"""Where a hyphenated word may break, as textwrap breaks it: after a hyphen between word characters."""


def _longest_piece(text: str) -> int:
    pieces = (piece for line in _lines(text) for word in line.split() for piece in HYPHEN_BREAK.split(word))
    return max(map(cell_len, pieces), default=0)


def _wrapped(text: str, width: int) -> str:
    """Free text wrapped at spaces, or after the hyphens of a hyphenated word (Squeeze-and-|Excitation),
    each of its own lines apart."""
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=True) for line in _lines(text))


def _sizes(column: Column, cells: list[str]) -> _Sizes:
    widest = max((cell_len(line) for cell in cells for line in _lines(cell)), default=0)
    natural = max(widest, cell_len(column.header), 1)
    header = _longest_word(column.header)
    if column.kind in ("label", "number"):
        least = max(widest, header, 1)
        return _Sizes(least, least, natural)
    if column.kind == "text":
        # Wide enough for its longest piece, so that text wraps at spaces and hyphens; a rarer, longer
        # word (a path) folds.
        longest = min(max((_longest_piece(cell) for cell in cells), default=0), FOLDED_WORD)
        least = max(min(widest, column.min_width), longest, header, 1)
        return _Sizes(least, least, natural)
    # clip: its header is not cut either, since a clipped column cannot wrap it
    least = max(min(widest, column.min_width), cell_len(column.header), 1)
    return _Sizes(least, max(least, min(natural, 2 * column.min_width)), natural)


@dataclass
class FittedTable:
    """A rich renderable: the columns that fit the console's width, or one line per row when none do."""

    columns: Sequence[Column]
    rows: list[list[str]] = field(default_factory=list)
    title: str | None = None
    caption: str | None = None
    boxed: bool = False
    """A heavy box with a line between rows (cells of several lines); else a rule under the header only."""
    styles: list[str] = field(default_factory=list)
    sections: set[int] = field(default_factory=set)
    """Rows after which a gap (or a line, when boxed) separates groups."""

    def add_row(self, *cells: str, style: str = "", end_section: bool = False) -> None:
        self.rows.append([str(cell) for cell in cells])
        self.styles.append(style)
        if end_section:
            self.sections.add(len(self.rows) - 1)

    def _overhead(self, count: int) -> int:
        # boxed: edges, a bar between columns, a space each side of every cell; else a space and a
        # separator between columns only.
        return 3 * count + 1 if self.boxed else 2 * (count - 1)

    def layout(self, width: int) -> list[int] | None:
        """The width of each column (0: dropped), or None when the columns that are always shown do not fit.

        The columns of the highest priority number are dropped while the table does not fit, or while it
        only fits by squeezing more important columns below the width they read well at."""
        sizes = [_sizes(column, [row[i] for row in self.rows]) for i, column in enumerate(self.columns)]
        shown = list(range(len(self.columns)))
        levels = sorted({column.priority for column in self.columns if column.priority > 0}, reverse=True)

        def needed(before: int | None = None) -> int:
            """Width of the shown columns: those more important than priority `before` as wanted, the rest least."""
            return self._overhead(len(shown)) + sum(
                sizes[i].wanted if before is not None and self.columns[i].priority < before else sizes[i].least
                for i in shown
            )

        while levels and (needed() > width or needed(levels[0]) > width):
            level = levels.pop(0)
            shown = [i for i in shown if self.columns[i].priority != level]
        if needed() > width:
            return None
        widths = {i: sizes[i].least for i in shown}
        spare = width - needed()

        def grow(i: int, target: int) -> None:
            nonlocal spare
            step = max(0, min(spare, target - widths[i]))
            widths[i] += step
            spare -= step

        # The most important columns first, to the width they read well at; then headers and labels onto one
        # line, smallest shortfall first; what is left goes to free text in proportion to what it lacks.
        for i in sorted(shown, key=lambda i: (self.columns[i].priority, i)):
            grow(i, sizes[i].wanted)
        prose = [i for i in shown if self.columns[i].kind in ("text", "clip")]
        for i in sorted((i for i in shown if i not in prose), key=lambda i: sizes[i].natural - widths[i]):
            grow(i, sizes[i].natural)
        lacking = {i: sizes[i].natural - widths[i] for i in prose if sizes[i].natural > widths[i]}
        share, total = spare, sum(lacking.values())
        for i, lack in lacking.items():
            grow(i, widths[i] + share * lack // total)
        for i in lacking:  # the rounding's remainder
            grow(i, sizes[i].natural)
        return [widths.get(i, 0) for i in range(len(self.columns))]

    def table(self, widths: list[int]) -> Table:
        table = Table(
            box=box.HEAVY_HEAD if self.boxed else box.SIMPLE_HEAD, show_edge=self.boxed, pad_edge=self.boxed,
            padding=(0, 1) if self.boxed else (0, 1, 0, 0), show_lines=self.boxed, expand=False,
        )
        shown = [i for i, width in enumerate(widths) if width]
        for i in shown:
            column = self.columns[i]
            table.add_column(
                column.header, width=widths[i], justify="right" if column.kind == "number" else "left",
                no_wrap=column.kind == "clip", overflow="ellipsis" if column.kind == "clip" else "fold",
            )
        for index, (row, style) in enumerate(zip(self.rows, self.styles)):
            # Text, not markup: an interval like [1.02, 1.10] or a label like se[x] is data.
            cells = (_wrapped(row[i], widths[i]) if self.columns[i].kind == "text" else row[i] for i in shown)
            table.add_row(*(Text(cell) for cell in cells), style=style or None, end_section=index in self.sections)
        return table

    def lines(self) -> Iterator[Text]:
        """The narrow fallback: each row as one line of its always-shown cells and those of the first
        priority, never broken (the terminal may wrap it; print with crop=False, or the console cuts it)."""
        kept = [i for i, column in enumerate(self.columns) if column.priority <= 1]
        for row, style in zip(self.rows, self.styles):
            line = "  ".join(" ".join(_lines(row[i])) for i in kept if row[i])
            yield Text(line, style=style, no_wrap=True, overflow="ignore")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Title and caption are prose: they wrap at the console's width, not at a narrow table's.
        if self.title:
            yield Text(self.title, style="bold")
        widths = self.layout(options.max_width)
        if widths is None:
            yield from self.lines()
        else:
            yield self.table(widths)
        if self.caption:
            yield Text(self.caption)
