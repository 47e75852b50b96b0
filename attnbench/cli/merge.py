"""`attnbench merge`: the shards of one grid (run anywhere with `run --shard i/n`) as one run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.cli.base import command, console, error_console, project_of


def _configure_merge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories to merge (two or more)")
    parser.add_argument("--out", help="results root for the merged run directory (default from attnbench.toml)")
    parser.add_argument(
        "--force", action="store_true",
        help="merge runs of different suites, environments or schemas, or with a case twice (the first run's "
        "row kept); the differences are recorded as warnings",
    )


@command("merge", "merge run directories (the shards of a grid) into one run directory", _configure_merge)
def cmd_merge(args: argparse.Namespace) -> int:
    from attnbench.results.merge import merge_runs
    from attnbench.results import read_run

    out = Path(args.out) if args.out else project_of(args).results_dir
    merged = merge_runs([Path(run) for run in args.runs], out, args.force)
    meta = read_run(merged).meta
    console.print(f"merged {len(args.runs)} runs ({meta['status']}): {merged}", markup=False, highlight=False)
    for warning in meta.get("warnings", []):
        error_console.print(f"attnbench: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    return 0
