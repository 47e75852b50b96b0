"""`attnbench run`: a suite (or the rest of an interrupted run), its summary, and the gate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.cli.base import command, console, error_console, print_warnings, project_of
from attnbench.cli.executing import add_executor_arguments, executor_choice, shard_of, with_threads
from attnbench.cli.gating import add_gate_arguments, gate_config, gate_flags_given, run_gate
from attnbench.config import SuiteSpec, filter_suite, load_suite
from attnbench.errors import GateError, UsageError

if TYPE_CHECKING:
    from attnbench.results import Run


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", help="a suite's name (built-in or the project's) or a suite file")
    parser.add_argument("--out", help="results root for the run directory (default from attnbench.toml)")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the suite)")
    parser.add_argument("--backbone", nargs="+", help="only these backbones of the suite")
    parser.add_argument(
        "--attention", nargs="+",
        help="only these attention entries of the suite: a key picks all its entries (se: se and se-bias), a label one",
    )
    parser.add_argument("--runtime", nargs="+", help="only these runtimes of the suite (eager, inductor, onnxruntime, ...)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="run only the missing cases of an interrupted run")
    parser.add_argument(
        "--force", action="store_true",
        help="with --resume: even if the suite file changed; with --baseline: even if it is of another suite",
    )
    parser.add_argument(
        "--calibrate", action="store_true",
        help="also time an A/A twin of `none` in every group: the run records its noise floor (see `calibrate`)",
    )
    parser.add_argument(
        "--baseline",
        help="a run directory, or a folder of runs (its latest run of the suite), to compare with; "
        "writes RUN_DIR/compare.md",
    )
    parser.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when the comparison with --baseline fails"
    )
    add_gate_arguments(parser)
    add_executor_arguments(parser)


@command("run", "run a suite and write a run directory (or --resume one)", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from attnbench.calibration import with_twin
    from attnbench.executors import ExecutorChoice
    from attnbench.signals import Interrupted
    from attnbench.progress import progress_bar
    from attnbench.results import read_meta, read_run
    from attnbench.runner import resume_run, run_suite

    if bool(args.suite) == bool(args.resume):
        raise UsageError("run needs exactly one of --suite NAME|PATH and --resume RUN_DIR")
    if args.resume:
        ignored = [flag for flag, given in (("--out", args.out), ("--device", args.device), ("--backbone", args.backbone),
                   ("--attention", args.attention), ("--runtime", args.runtime), ("--calibrate", args.calibrate)) if given]
        if ignored:
            raise UsageError(
                f"{ignored[0]} goes with --suite; --resume finishes the run's recorded grid, where it is"
            )
    if args.force and not (args.resume or args.baseline):
        raise UsageError("--force goes with --resume (a changed suite file) or --baseline (another suite)")
    if args.fail_on_regression and not args.baseline:
        raise UsageError("--fail-on-regression needs --baseline PATH, the run to compare with")
    if not args.baseline and gate_flags_given(args):
        raise UsageError(f"{gate_flags_given(args)[0]} needs --baseline PATH, the run to compare with")
    project = with_threads(args, project_of(args))
    choice, shard = executor_choice(args), shard_of(args)
    gate_config(args, project)  # bad thresholds fail before the run, not after it
    # Everything that can be refused is refused here, before the first case runs.
    if args.resume:
        suite_name = read_meta(Path(args.resume)).get("suite", {}).get("name", "?")
    else:
        loaded = load_suite(args.suite, project)
        suite = filter_suite(loaded, args.backbone, args.attention, args.device, args.runtime)
        if args.calibrate:
            suite = with_twin(suite)
        suite_name = suite.name
        print_warnings(_unpaired(suite, bool(args.attention)))
    baseline = _baseline(args, suite_name)
    try:
        with progress_bar(error_console) as report_progress:
            if args.resume:
                resumed = resume_run(Path(args.resume), project, args.force, report_progress, choice)
                run_dir = resumed.path
            else:
                out = Path(args.out) if args.out else None
                run_dir = run_suite(suite, project, out, report_progress, loaded.fingerprint,
                                    choice or ExecutorChoice(), shard)
    except Interrupted as interruption:  # the bar is gone by now: the message stands alone
        error_console.print(
            f"attnbench: interrupted by {interruption}; finished cases are kept in {interruption.run_dir}; "
            f"resume with: attnbench run --resume {interruption.run_dir}",
            markup=False, highlight=False, soft_wrap=True,
        )
        return interruption.exit_code
    from attnbench.report.summary import run_summary

    if args.resume:
        print_warnings(resumed.warnings)
        if not resumed.measured:
            console.print(f"nothing to do: every case of run {run_dir.name} has a row", markup=False,
                          highlight=False, soft_wrap=True)
    console.print(run_summary(read_run(run_dir)), crop=False)
    for line in _left_out_lines(read_meta(run_dir)):
        console.print(line, markup=False, highlight=False)
    # One line a script can read, a path kept whole: `attnbench latest` prints the same directory later.
    console.print(f"run directory: {run_dir}", markup=False, highlight=False, soft_wrap=True)
    if baseline is not None:
        passed = run_gate(args, project, baseline, read_run(run_dir), run_dir / "compare.md")
        return 1 if args.fail_on_regression and not passed else 0
    return 0


def _baseline(args: argparse.Namespace, suite_name: str) -> Run | None:
    """The run --baseline names, chosen before the run starts, so that a run written into the baseline's
    own folder is never its own baseline; from a folder, its latest run of the same suite."""
    from attnbench.gate import check_gateable, resolve_run

    if not args.baseline:
        return None
    baseline = resolve_run(Path(args.baseline), "baseline", suite_name)
    check_gateable(baseline, "baseline", args.metric)
    if args.resume and baseline.path.resolve() == Path(args.resume).resolve():
        raise GateError(f"--baseline {args.baseline} is the run being resumed; compare it with an earlier run")
    if baseline.suite_name != suite_name and not args.force:
        raise GateError(
            f"--baseline {args.baseline}: its run {baseline.run_id} is of suite {baseline.suite_name!r}, not "
            f"{suite_name!r}; give a baseline of this suite, or --force to compare their common cases"
        )
    return baseline


def _unpaired(suite: SuiteSpec, narrowed: bool) -> list[str]:
    """A latency run without `none` measures no overhead: said before it starts, not found in its report."""
    from attnbench.modules import BASELINE

    if "latency" not in suite.metrics or any(entry.label == BASELINE for entry in suite.grid.attention):
        return []
    cause = "--attention left it out" if narrowed else "the suite has none"
    return [f"no `{BASELINE}` in this run ({cause}): latencies are measured, but no overhead over the plain "
            f"backbone; add `{BASELINE}` to --attention for one"]


def _left_out_lines(meta: dict) -> list[str]:
    """What `"*"` left out of the grid, and why (meta.json's `left_out`)."""
    return [f'left out of "*": {item["reason"]}' for item in meta.get("left_out", [])]
