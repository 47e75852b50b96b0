"""`attnbench compare`: two runs case by case, exit 1 on a regression."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.cli.base import command, project_of
from attnbench.cli.gating import add_gate_arguments, run_gate


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", help="the baseline run directory (or a folder of runs: its latest)")
    parser.add_argument("current", help="the current run directory (or a folder of runs: its latest)")
    parser.add_argument("--out", help="Markdown file to write, e.g. for a pull-request comment")
    add_gate_arguments(parser)


@command(
    "compare",
    "compare two runs case by case; exit 1 on a latency regression, 2 on misuse",
    _configure_compare,
)
def cmd_compare(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    return 0 if run_gate(args, project_of(args), Path(args.baseline), Path(args.current), out) else 1
