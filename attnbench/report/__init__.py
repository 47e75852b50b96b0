"""Reports of run directories: Markdown with figures, or the tables as CSV/JSON."""

from attnbench.report.writer import FORMATS, write_report

__all__ = ["FORMATS", "write_report"]
