"""The gate's arguments and its one call, shared by `attnbench compare` and `run --baseline`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.cli.base import console, print_warnings
from attnbench.config import GateConfig, ProjectConfig, parse_alpha, parse_fraction
from attnbench.outputs import write_text

if TYPE_CHECKING:
    from attnbench.results import Run


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-slowdown", help="largest accepted slowdown of the median, e.g. 5%% or 0.05 (default from [gate])"
    )
    parser.add_argument("--alpha", help="significance level of the U test, e.g. 0.01 (default from [gate])")
    parser.add_argument("--metric", default="latency_ms", help="raw samples to compare: latency_ms or wall_ms")
    parser.add_argument("--strict-env", action="store_true", help="refuse runs from different environments")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--absolute", action="store_true",
        help="compare raw times, not each module's time over `none` of its own run (for torch or hardware "
        "upgrades on a dedicated machine)",
    )
    scale.add_argument("--relative", action="store_true", help="the default: each module over `none` of its own run")
    parser.add_argument(
        "--fail-on-inconclusive", action="store_true",
        help="also fail when noise leaves a slowdown of the threshold's size undetected",
    )


def gate_flags_given(args: argparse.Namespace) -> list[str]:
    """The gate's options set on the command line (they mean nothing without a baseline)."""
    given = {
        "--max-slowdown": args.max_slowdown is not None, "--alpha": args.alpha is not None,
        "--metric": args.metric != "latency_ms", "--strict-env": args.strict_env, "--relative": args.relative,
        "--absolute": args.absolute, "--fail-on-inconclusive": args.fail_on_inconclusive,
    }
    return [flag for flag, set_ in given.items() if set_]


def gate_config(args: argparse.Namespace, project: ProjectConfig) -> GateConfig:
    """attnbench.toml's [gate], with the command line replacing its defaults (overrides still apply)."""
    defaults = project.gate.defaults
    if args.max_slowdown is not None:
        defaults = replace(defaults, max_slowdown=parse_fraction(args.max_slowdown, "--max-slowdown"))
    if args.alpha is not None:
        defaults = replace(defaults, alpha=parse_alpha(args.alpha, "--alpha"))
    return replace(project.gate, defaults=defaults)


def run_gate(
    args: argparse.Namespace, project: ProjectConfig, baseline: Run, current: Run, out: Path | None
) -> bool:
    """Compares two runs, prints the table and warnings, writes Markdown to `out` (a path already
    prepared); True when it passes. `args.force` compares runs of different suites."""
    from attnbench.gate import compare_runs
    from attnbench.report.compare import comparison_markdown, comparison_table

    comparison = compare_runs(
        baseline, current, gate_config(args, project), args.metric, args.strict_env, absolute=args.absolute,
        across_suites=args.force,
    )
    console.print(comparison_table(comparison), crop=False)
    print_warnings(comparison.warnings)
    if out is not None:
        write_text(out, comparison_markdown(comparison), "comparison")
        console.print(f"comparison written to {out}", markup=False, highlight=False, soft_wrap=True)
    return comparison.passes(args.fail_on_inconclusive)
