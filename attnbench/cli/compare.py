"""`attnbench compare`: two runs case by case, exit 1 on a regression."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.cli.base import command, project_of
from attnbench.cli.gating import add_gate_arguments, run_gate
from attnbench.outputs import prepare_output


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", help="the baseline run directory (or a folder of runs: its latest)")
    parser.add_argument("current", help="the current run directory (or a folder of runs: its latest)")
    parser.add_argument("--out", help="Markdown file to write, e.g. for a pull-request comment")
    parser.add_argument(
        "--force", action="store_true", help="compare runs of different suites (their common cases), with a warning"
    )
    add_gate_arguments(parser)


@command(
    "compare",
    "compare two runs case by case; exit 1 on a latency regression, 2 on misuse",
    _configure_compare,
)
def cmd_compare(args: argparse.Namespace) -> int:
    from attnbench.gate import resolve_run

    project = project_of(args)
    out = prepare_output(Path(args.out), "--out") if args.out else None
    current = resolve_run(Path(args.current), "current")
    # From a folder holding several suites, the baseline is the latest run of the current run's suite.
    baseline = resolve_run(Path(args.baseline), "baseline", current.suite_name)
    return 0 if run_gate(args, project, baseline, current, out) else 1
