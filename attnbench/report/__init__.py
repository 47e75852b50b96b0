"""Reports of run directories: Markdown with figures, or the tables as CSV/JSON.

The writer (and with it matplotlib and the report's sections) is imported on first use, so that a
command which only needs a table of this package (`attnbench run`'s closing summary) does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attnbench.report.view import ReportOptions
    from attnbench.report.writer import FORMATS, write_report

__all__ = ["FORMATS", "ReportOptions", "write_report"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from attnbench.report import view, writer

    return getattr(writer if name != "ReportOptions" else view, name)
