"""Markdown reports from run directories."""

from attnbench.report.markdown import write_report

__all__ = ["write_report"]
