"""Reports of run directories: Markdown with figures, or the tables as CSV/JSON."""

from attnbench.report.view import ReportOptions
from attnbench.report.writer import FORMATS, write_report

# Importing the section files fills the SECTIONS (and FIGURES) registries.
from attnbench.report import accuracy_section, formula, paper, profile_section, runtime_section  # noqa: E402,F401

__all__ = ["FORMATS", "ReportOptions", "write_report"]
