"""Markdown reports from run directories."""

from attnbench.report.markdown import write_report

# Importing the section files fills the section registry.
from attnbench.report import formula  # noqa: E402,F401

__all__ = ["write_report"]
