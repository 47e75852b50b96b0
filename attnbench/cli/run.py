"""`attnbench run`: a suite (or the rest of an interrupted run), its summary, and the gate."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from attnbench.cli.base import command, console, error_console, project_of
from attnbench.cli.gating import add_gate_arguments, gate_config, run_gate
from attnbench.config import filter_suite, load_suite
from attnbench.errors import GateError, UsageError


def _summary_table(run_dir: Path) -> Table:
    import pandas as pd

    from attnbench.report.format import fmt_number
    from attnbench.report.tables import with_overhead
    from attnbench.results import read_run

    cases = read_run(run_dir).cases
    ok = with_overhead(cases) if (cases["status"] == "ok").any() else cases.iloc[0:0]
    table = Table("backbone", "attention", "batch", "res", "status", "latency ms", "vs none %", "MACs (G)")
    for _, row in cases.iterrows():
        measured = ok[ok["case_id"] == row["case_id"]]
        has_overhead = "latency_overhead_pct" in measured and not measured.empty  # absent without latency
        overhead = measured["latency_overhead_pct"].iloc[0] if has_overhead else None
        table.add_row(
            row["backbone"], row["attention"], str(row["batch_size"]), str(row["resolution"]), row["status"],
            fmt_number(row["latency_ms_median"]), fmt_number(overhead),
            fmt_number(row["macs"] / 1e9 if pd.notna(row["macs"]) else None),
        )
    return table


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", help="suite name (from suites/) or path to a suite TOML")
    parser.add_argument("--out", help="results root for the run directory (default from attnbench.toml)")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the suite)")
    parser.add_argument("--backbone", nargs="+", help="only these backbones of the suite")
    parser.add_argument("--attention", nargs="+", help="only these attention keys or labels of the suite")
    parser.add_argument("--resume", metavar="RUN_DIR", help="run only the missing cases of an interrupted run")
    parser.add_argument("--force", action="store_true", help="with --resume: even if the suite file changed")
    parser.add_argument(
        "--calibrate", action="store_true",
        help="also time an A/A twin of `none` in every group: the run records its noise floor (see `calibrate`)",
    )
    parser.add_argument("--baseline", help="a run directory to compare with; writes RUN_DIR/compare.md")
    parser.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when the comparison with --baseline fails"
    )
    add_gate_arguments(parser)


@command("run", "run a suite and write a run directory (or --resume one)", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from attnbench.calibration import with_twin
    from attnbench.guards import Interrupted
    from attnbench.progress import progress_bar
    from attnbench.runner import resume_run, run_suite

    if bool(args.suite) == bool(args.resume):
        raise UsageError("run needs exactly one of --suite NAME|PATH and --resume RUN_DIR")
    if args.fail_on_regression and not args.baseline:
        raise UsageError("--fail-on-regression needs --baseline PATH, the run to compare with")
    if args.baseline and not Path(args.baseline).exists():
        raise GateError(f"baseline {args.baseline} does not exist; accepted: a run directory or a folder of runs")
    project = project_of(args)
    gate_config(args, project)  # bad thresholds fail before the run, not after it
    try:
        with progress_bar(error_console) as report_progress:
            if args.resume:
                run_dir = resume_run(Path(args.resume), project, args.force, report_progress)
            else:
                loaded = load_suite(args.suite, project)
                suite = filter_suite(loaded, args.backbone, args.attention, args.device)
                if args.calibrate:
                    suite = with_twin(suite)
                out = Path(args.out) if args.out else None
                run_dir = run_suite(suite, project, out, report_progress, loaded.fingerprint)
    except Interrupted as interruption:  # the bar is gone by now: the message stands alone
        error_console.print(
            f"attnbench: interrupted by {interruption}; finished cases are kept in {interruption.run_dir}; "
            f"resume with: attnbench run --resume {interruption.run_dir}",
            markup=False, highlight=False, soft_wrap=True,
        )
        return interruption.exit_code
    console.print(_summary_table(run_dir))
    console.print(f"run directory: {run_dir}")
    if args.baseline:
        passed = run_gate(args, project, Path(args.baseline), run_dir, run_dir / "compare.md")
        return 1 if args.fail_on_regression and not passed else 0
    return 0
