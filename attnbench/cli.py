"""Command line: each command parses its arguments, calls one library function and returns an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from attnbench.config import (
    DEVICES,
    DTYPES,
    MODES,
    CaseSpec,
    GateConfig,
    ProjectConfig,
    attention_entry,
    filter_suite,
    list_suites,
    load_project,
    load_suite,
    parse_alpha,
    parse_fraction,
    parse_option,
)
from attnbench.errors import AttnbenchError, GateError, OptionError, ResultsError, UsageError
from attnbench.registry import Registry

console = Console()
error_console = Console(stderr=True)


@dataclass(frozen=True)
class CommandSpec:
    """A subcommand: its help line, how it adds its arguments, and the function that runs it."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]


COMMANDS: Registry[CommandSpec] = Registry("command")


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Registers the decorated handler as subcommand `name`; new commands need no change elsewhere."""

    def decorate(handle: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS.add(name, CommandSpec(name, help, configure, handle))
        return handle

    return decorate


LISTINGS: Registry[Callable[[ProjectConfig], Table]] = Registry("listing")


def project_of(args: argparse.Namespace) -> ProjectConfig:
    return load_project(Path(args.config) if args.config else None)


LISTED_CHANNELS = 256
"""The channel count at which `list attention` evaluates each formula (a ResNet-50 layer1 block)."""


@LISTINGS.register("attention")
def _list_attention(project: ProjectConfig) -> Table:
    from attnbench.modules import ATTENTION

    table = Table(show_lines=True)
    # Every column but the key may wrap, so that no column vanishes on an 80-character terminal.
    table.add_column("key", no_wrap=True)
    table.add_column("paper", min_width=14, max_width=34)
    table.add_column("placement", min_width=8, overflow="fold")
    table.add_column("default options", min_width=10, overflow="fold")
    table.add_column("params formula", min_width=12, max_width=30)
    table.add_column(f"C={LISTED_CHANNELS}", justify="right", no_wrap=True)
    for key, spec in ATTENTION.items():
        options = "\n".join(f"{name}={value!r}" for name, value in spec.defaults.items()) or "-"
        try:
            params = f"{spec.param_count(LISTED_CHANNELS):,}"
        except AttnbenchError:
            params = "-"
        paper = f"{spec.paper.title} ({spec.paper.venue} {spec.paper.year})"
        table.add_row(key, paper, spec.placement, options, spec.formula, params)
    return table


@LISTINGS.register("backbones")
def _list_backbones(project: ProjectConfig) -> Table:
    from attnbench.backbones import BACKBONES, PLACEMENTS, native_summary

    table = Table(show_lines=True)
    # The names never wrap; placements and the native attention wrap, to fit an 80-character terminal.
    table.add_column("backbone", no_wrap=True)
    table.add_column("family", no_wrap=True)
    table.add_column("min res", justify="right", max_width=3)
    table.add_column("placements", min_width=16, overflow="fold")
    table.add_column("native attention", min_width=14)
    for name, spec in BACKBONES.items():
        placements = [p for p, by_family in PLACEMENTS.items() if spec.family in by_family]
        native = native_summary(name) or "-"
        table.add_row(name, spec.family, str(spec.min_resolution), ", ".join(placements), native)
    return table


@LISTINGS.register("suites")
def _list_suites(project: ProjectConfig) -> Table:
    table = Table("suite", "description", "metrics", "cases")
    for name in list_suites(project):
        suite = load_suite(name, project)
        table.add_row(name, suite.description, ", ".join(suite.metrics), str(suite.grid.case_count))
    return table


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=LISTINGS.names())


@command("list", "list registered attention modules, backbones or suites", _configure_list)
def cmd_list(args: argparse.Namespace) -> int:
    console.print(LISTINGS.get(args.what)(project_of(args)))
    return 0


def _summary_table(run_dir: Path) -> Table:
    import pandas as pd

    from attnbench.report.markdown import fmt_number
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


def _add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-slowdown", help="largest accepted slowdown of the median, e.g. 5%% or 0.05 (default from [gate])"
    )
    parser.add_argument("--alpha", help="significance level of the U test, e.g. 0.01 (default from [gate])")
    parser.add_argument("--metric", default="latency_ms", help="raw samples to compare: latency_ms or wall_ms")
    parser.add_argument("--strict-env", action="store_true", help="refuse runs from different environments")
    parser.add_argument(
        "--relative", action="store_true",
        help="gate each module's time relative to `none` in its own run (robust to machine drift)",
    )


def _gate_config(args: argparse.Namespace, project: ProjectConfig) -> GateConfig:
    """attnbench.toml's [gate], with the command line replacing its defaults (overrides still apply)."""
    defaults = project.gate.defaults
    if args.max_slowdown is not None:
        defaults = replace(defaults, max_slowdown=parse_fraction(args.max_slowdown, "--max-slowdown"))
    if args.alpha is not None:
        defaults = replace(defaults, alpha=parse_alpha(args.alpha, "--alpha"))
    return replace(project.gate, defaults=defaults)


def _gate(
    args: argparse.Namespace, project: ProjectConfig, baseline: Path, current: Path, out: Path | None
) -> bool:
    """Compares two runs, prints the table and warnings, writes Markdown to `out`; True when it passes."""
    from attnbench.gate import compare_runs, resolve_run
    from attnbench.report.compare import comparison_markdown, comparison_table

    comparison = compare_runs(
        resolve_run(baseline, "baseline"), resolve_run(current, "current"),
        _gate_config(args, project), args.metric, args.strict_env, relative=args.relative,
    )
    console.print(comparison_table(comparison))
    for warning in comparison.warnings:
        error_console.print(f"attnbench: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        try:
            out.write_text(comparison_markdown(comparison))
        except OSError as error:
            raise ResultsError(f"cannot write {out}: {error.strerror}") from None
        console.print(f"comparison written to {out}")
    return comparison.passed


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", help="suite name (from suites/) or path to a suite TOML")
    parser.add_argument("--out", help="results root for the run directory (default from attnbench.toml)")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the suite)")
    parser.add_argument("--backbone", nargs="+", help="only these backbones of the suite")
    parser.add_argument("--attention", nargs="+", help="only these attention keys or labels of the suite")
    parser.add_argument("--resume", metavar="RUN_DIR", help="run only the missing cases of an interrupted run")
    parser.add_argument("--force", action="store_true", help="with --resume: even if the suite file changed")
    parser.add_argument("--baseline", help="a run directory to compare with; writes RUN_DIR/compare.md")
    parser.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when the comparison with --baseline fails"
    )
    _add_gate_arguments(parser)


def _progress_columns() -> tuple:
    return (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )


@command("run", "run a suite and write a run directory (or --resume one)", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from attnbench.runner import Interrupted, resume_run, run_suite

    if bool(args.suite) == bool(args.resume):
        raise UsageError("run needs exactly one of --suite NAME|PATH and --resume RUN_DIR")
    if args.fail_on_regression and not args.baseline:
        raise UsageError("--fail-on-regression needs --baseline PATH, the run to compare with")
    if args.baseline and not Path(args.baseline).exists():
        raise GateError(f"baseline {args.baseline} does not exist; accepted: a run directory or a folder of runs")
    project = project_of(args)
    _gate_config(args, project)  # bad thresholds fail before the run, not after it
    with Progress(*_progress_columns(), console=error_console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def report_progress(index: int, total: int, case) -> None:
            progress.update(
                task, completed=index, total=total,
                description=f"{case.backbone} {case.attention.label} b{case.batch_size} r{case.resolution}"
                f" {case.dtype} {case.mode}",
            )

        try:
            if args.resume:
                run_dir = resume_run(Path(args.resume), project, args.force, report_progress)
            else:
                loaded = load_suite(args.suite, project)
                suite = filter_suite(loaded, args.backbone, args.attention, args.device)
                out = Path(args.out) if args.out else None
                run_dir = run_suite(suite, project, out, report_progress, loaded.fingerprint)
        except Interrupted as interruption:
            progress.stop()
            error_console.print(
                f"attnbench: interrupted by {interruption}; finished cases are kept in {interruption.run_dir}; "
                f"resume with: attnbench run --resume {interruption.run_dir}",
                markup=False, highlight=False, soft_wrap=True,
            )
            return interruption.exit_code
    console.print(_summary_table(run_dir))
    console.print(f"run directory: {run_dir}")
    if args.baseline:
        passed = _gate(args, project, Path(args.baseline), run_dir, run_dir / "compare.md")
        return 1 if args.fail_on_regression and not passed else 0
    return 0


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", help="the baseline run directory (or a folder of runs: its latest)")
    parser.add_argument("current", help="the current run directory (or a folder of runs: its latest)")
    parser.add_argument("--out", help="Markdown file to write, e.g. for a pull-request comment")
    _add_gate_arguments(parser)


@command(
    "compare",
    "compare two runs case by case; exit 1 on a latency regression, 2 on misuse",
    _configure_compare,
)
def cmd_compare(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    return 0 if _gate(args, project_of(args), Path(args.baseline), Path(args.current), out) else 1


def _configure_report(parser: argparse.ArgumentParser) -> None:
    from attnbench.report import FORMATS

    parser.add_argument(
        "paths", nargs="+", metavar="PATH",
        help="a run directory or a results root holding many; two run directories compare them (A B)",
    )
    parser.add_argument("--out", help="file to write (a folder for csv); default beside the runs")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--run", metavar="ID", help="only this run of a results root (its id or a unique prefix)")
    choose.add_argument("--all", action="store_true", help="every run of a results root, not the latest per suite")
    parser.add_argument(
        "--format", default="md", choices=FORMATS.names(),
        help="md: Markdown with PNG figures; csv: one file per table in a folder; json: all tables in one file",
    )


@command("report", "write a report of a run directory or results root, or compare two runs", _configure_report)
def cmd_report(args: argparse.Namespace) -> int:
    from attnbench.report import write_report

    target = write_report(
        [Path(p) for p in args.paths], Path(args.out) if args.out else None, args.run, args.all, args.format
    )
    console.print(f"report written to {target}")
    return 0


def _configure_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="a backbone of `attnbench list backbones`")
    parser.add_argument("--attention", required=True, help="an attention key, or none for the plain backbone")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a module option, the value as in suite files (reduction=8, bias=true); repeatable")
    parser.add_argument("--placement", help="insertion policy (default: the module's own)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--resolution", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--mode", choices=MODES, default="eval", help="eval: forward; train: forward, backward, SGD")
    parser.add_argument("--device", choices=DEVICES, help="default from attnbench.toml")
    parser.add_argument("--warmup", type=int, default=1, help="steps before the profiled ones (default 1)")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps, averaged (default 2)")
    parser.add_argument("--top", type=int, default=10, help="rows of the operator tables (default 10)")
    parser.add_argument("--trace", help="write a Chrome/Perfetto trace (JSON) of the profiled steps with the module")
    parser.add_argument("--out", help="also write the tables to this Markdown file")


def _profile_case(args: argparse.Namespace, device: str) -> CaseSpec:
    from attnbench.backbones import get_backbone

    minimum = get_backbone(args.backbone).min_resolution
    for flag, value, lowest in (
        ("--batch", args.batch, 1), ("--resolution", args.resolution, minimum), ("--warmup", args.warmup, 1),
        ("--steps", args.steps, 1), ("--top", args.top, 1),
    ):
        if value < lowest:
            raise OptionError(f"{flag} {value} is too small; accepted: >= {lowest}")
    options = dict(parse_option(text) for text in args.option)
    entry = attention_entry(args.attention, options, placement=args.placement)
    return CaseSpec(args.backbone, entry, args.batch, args.resolution, args.dtype, args.mode, device)


def _rich_table(title: str, frame) -> Table:
    from attnbench.report.markdown import fmt_number

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(frame.columns):
        table.add_column(column, no_wrap=index == 0)  # operator names are what the table is read for
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt_number(value) for value in row))
    return table


@command("profile", "profile one model: top operators, launches per step, time inside attention", _configure_profile)
def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from attnbench.measure.profile import profile_against_baseline
    from attnbench.report.profile_section import PROFILE_NOTE, profile_markdown, profile_tables
    from attnbench.runner import resolve_device

    project = project_of(args)
    device = resolve_device(args.device or project.device)
    case = _profile_case(args, device.type)
    if project.threads:
        torch.set_num_threads(project.threads)
    trace = Path(args.trace) if args.trace else None
    result, baseline = profile_against_baseline(case, device, warmup=args.warmup, steps=args.steps, trace=trace)
    tables = profile_tables(result, baseline, case.backbone, args.top)
    heading = (
        f"{case.backbone} + {case.attention.label}, batch {case.batch_size}, {case.resolution} px, {case.dtype}, "
        f"{case.mode}, {device} ({args.steps} profiled steps)"
    )
    console.print(f"[bold]{heading}[/bold]\n{PROFILE_NOTE}")
    for title, frame in tables:
        console.print(_rich_table(title, frame))
    if trace:
        console.print(f"trace written to {trace} (open in https://ui.perfetto.dev or chrome://tracing)")
    if args.out:
        Path(args.out).write_text(profile_markdown(heading, tables))
        console.print(f"tables written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnbench", description="Benchmark channel and spatial attention modules in CNN backbones."
    )
    parser.add_argument("--config", help="path to attnbench.toml (default: nearest in cwd or its parents)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, spec in COMMANDS.items():
        spec.configure(commands.add_parser(name, help=spec.help, description=spec.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS.get(args.command).handle(args)
    except AttnbenchError as error:
        error_console.print(f"attnbench: error: {error}", markup=False, highlight=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        error_console.print("attnbench: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
