"""`attnbench calibrate`: the machine's noise floor at a suite's budget, from `none` against itself."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from attnbench.cli.base import command, console, project_of
from attnbench.config import filter_suite, load_suite
from attnbench.errors import ConfigError


def _configure_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help="a suite's name (built-in or the project's) or a suite file")
    parser.add_argument("--out", help="results root for the run directory (default from attnbench.toml)")
    parser.add_argument("--backbone", nargs="+", help="only these backbones of the suite")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the suite)")


@command(
    "calibrate",
    "time `none` against an A/A copy of itself in every setting of a suite: the noise floor at its budget",
    _configure_calibrate,
)
def cmd_calibrate(args: argparse.Namespace) -> int:
    from attnbench.calibration import noise_floor_sentence, with_twin
    from attnbench.modules import BASELINE
    from attnbench.results import read_run
    from attnbench.runner import run_suite

    project = project_of(args)
    loaded = load_suite(args.suite, project)
    if not any(entry.label == BASELINE for entry in loaded.grid.attention):
        raise ConfigError(f"suite {loaded.name!r} has no `{BASELINE}` entry to calibrate against; add it")
    suite = filter_suite(loaded, args.backbone, [BASELINE], args.device)
    suite = with_twin(replace(suite, metrics=("latency",)))
    run_dir = run_suite(suite, project, Path(args.out) if args.out else None, None, loaded.fingerprint)
    calibration = read_run(run_dir).meta.get("calibration")
    if calibration:
        console.print(noise_floor_sentence(calibration).replace("**", ""), soft_wrap=True)
    console.print(f"run directory: {run_dir}")
    return 0
