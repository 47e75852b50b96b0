"""Markdown reports from run directories."""

from attnbench.report import paper  # noqa: F401  (registers the "Paper reproduction" section)
from attnbench.report.markdown import write_report

__all__ = ["write_report"]
