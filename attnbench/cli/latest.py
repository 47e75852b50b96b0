"""`attnbench latest`: the latest run directory of a results root, for scripts (CI recipes)."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.cli.base import command
from attnbench.errors import ResultsError


def _configure_latest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="RESULTS_ROOT", help="a folder of run directories")
    parser.add_argument("--suite", help="the latest run of this suite (default: of any suite)")


@command(
    "latest", "print the latest run directory of a results root (of one suite); exit 2 when there is none",
    _configure_latest,
)
def cmd_latest(args: argparse.Namespace) -> int:
    from attnbench.results import find_runs, read_meta

    root = Path(args.root)
    # Only run directories count: a report's figures folder beside them is not the latest run.
    runs = [run for run in find_runs(root)
            if args.suite is None or read_meta(run).get("suite", {}).get("name") == args.suite]
    if not runs:
        raise ResultsError(f"{root} holds no run directory" + (f" of suite {args.suite!r}" if args.suite else ""))
    print(runs[-1])  # plain: a script reads this line
    return 0
