"""`attnbench report`: Markdown, CSV or JSON of runs, or of two runs compared."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.cli.base import command, console, print_warnings, project_of

def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="a run directory or a results root holding many; two run directories compare them (A B)",
    )
    parser.add_argument("--out", help="file to write (a folder for csv); default beside the runs")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--run", metavar="ID", help="only this run of a results root (its id or a unique prefix)")
    choose.add_argument("--all", action="store_true", help="every run of a results root, not the latest per suite")
    parser.add_argument(
        "--format", default="md",  # checked by check_output: the report package takes seconds to import
        help="md: Markdown with PNG figures; csv: one file per table in a folder; json: all tables in one file",
    )


@command("report", "write a report of a run directory or results root, or compare two runs", _configure_report)
def cmd_report(args: argparse.Namespace) -> int:
    from attnbench.accuracy import accuracy_rows
    from attnbench.report import ReportOptions
    from attnbench.report.writer import build_report, check_output, save_report

    project = project_of(args)
    out = Path(args.out) if args.out else None
    check_output(out, args.format)
    report = build_report(
        [Path(p) for p in args.paths], args.run, args.all,
        ReportOptions(project.gate, accuracy_rows(project)),  # the lab's own accuracies join the published ones
    )
    target = save_report(report, out, args.format)
    read = [*report.runs, *([report.baseline] if report.baseline else [])]
    print_warnings(warning for run in read for warning in run.warnings)
    console.print(f"report written to {target}", markup=False, highlight=False, soft_wrap=True)
    return 0
