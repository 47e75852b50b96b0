"""Markdown reports from run directories."""

from attnbench.report import paper  # noqa: F401  (registers the "Paper reproduction" section)
from attnbench.report.markdown import write_report

# Importing the section files fills the SECTIONS registry.
from attnbench.report import formula, profile_section  # noqa: E402,F401

__all__ = ["write_report"]
