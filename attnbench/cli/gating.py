"""The gate's arguments and its one call, shared by `attnbench compare` and `run --baseline`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from attnbench.cli.base import console, error_console
from attnbench.config import GateConfig, ProjectConfig, parse_alpha, parse_fraction
from attnbench.errors import ResultsError

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


def gate_config(args: argparse.Namespace, project: ProjectConfig) -> GateConfig:
    """attnbench.toml's [gate], with the command line replacing its defaults (overrides still apply)."""
    defaults = project.gate.defaults
    if args.max_slowdown is not None:
        defaults = replace(defaults, max_slowdown=parse_fraction(args.max_slowdown, "--max-slowdown"))
    if args.alpha is not None:
        defaults = replace(defaults, alpha=parse_alpha(args.alpha, "--alpha"))
    return replace(project.gate, defaults=defaults)


def run_gate(
    args: argparse.Namespace, project: ProjectConfig, baseline: Path, current: Path, out: Path | None
) -> bool:
    """Compares two runs, prints the table and warnings, writes Markdown to `out`; True when it passes."""
    from attnbench.gate import Verdict, compare_runs, resolve_run
    from attnbench.report.compare import comparison_markdown, comparison_table

    comparison = compare_runs(
        resolve_run(baseline, "baseline"), resolve_run(current, "current"),
        gate_config(args, project), args.metric, args.strict_env, absolute=args.absolute,
    )
    console.print(comparison_table(comparison), crop=False)
    for warning in comparison.warnings:
        error_console.print(f"attnbench: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        try:
            out.write_text(comparison_markdown(comparison))
        except OSError as error:
            raise ResultsError(f"cannot write {out}: {error.strerror}") from None
        console.print(f"comparison written to {out}", markup=False, highlight=False, soft_wrap=True)
    return comparison.passed and not (args.fail_on_inconclusive and comparison.of(Verdict.INCONCLUSIVE))
