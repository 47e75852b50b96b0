"""Command line: each command parses its arguments, calls one library function and returns an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from attnbench.config import ProjectConfig, filter_suite, list_suites, load_project, load_suite
from attnbench.errors import AttnbenchError
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


@LISTINGS.register("attention")
def _list_attention(project: ProjectConfig) -> Table:
    from attnbench.modules import ATTENTION

    table = Table("key", "paper", "venue", "year", "placement", "default options", "params formula")
    for key, spec in ATTENTION.items():
        options = ", ".join(f"{name}={value!r}" for name, value in spec.defaults.items())
        table.add_row(key, spec.paper.title, spec.paper.venue, str(spec.paper.year), spec.placement, options, spec.formula)
    return table


@LISTINGS.register("backbones")
def _list_backbones(project: ProjectConfig) -> Table:
    from attnbench.backbones import BACKBONES, PLACEMENTS

    table = Table("backbone", "family", "min resolution", "placements")
    for name, spec in BACKBONES.items():
        placements = [p for p, by_family in PLACEMENTS.items() if spec.family in by_family]
        table.add_row(name, spec.family, str(spec.min_resolution), ", ".join(placements))
    return table


@LISTINGS.register("suites")
def _list_suites(project: ProjectConfig) -> Table:
    table = Table("suite", "description", "metrics", "cases")
    for name in list_suites(project):
        suite = load_suite(name, project)
        grid = suite.grid
        count = (
            len(grid.backbones) * len(grid.attention) * len(grid.batch_sizes)
            * len(grid.resolutions) * len(grid.dtypes) * len(grid.modes)
        )
        table.add_row(name, suite.description, ", ".join(suite.metrics), str(count))
    return table


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=LISTINGS.names())


@command("list", "list registered attention modules, backbones or suites", _configure_list)
def cmd_list(args: argparse.Namespace) -> int:
    console.print(LISTINGS.get(args.what)(project_of(args)))
    return 0


def _summary_table(run_dir: Path) -> Table:
    from attnbench.report.markdown import fmt_number
    from attnbench.report.tables import with_overhead
    from attnbench.results import read_run

    cases = read_run(run_dir).cases
    ok = with_overhead(cases) if (cases["status"] == "ok").any() else cases.iloc[0:0]
    table = Table("backbone", "attention", "batch", "res", "status", "latency ms", "vs none %", "MACs (G)")
    for _, row in cases.iterrows():
        measured = ok[ok["case_id"] == row["case_id"]]
        overhead = measured["latency_overhead_pct"].iloc[0] if not measured.empty else None
        table.add_row(
            row["backbone"], row["attention"], str(row["batch_size"]), str(row["resolution"]), row["status"],
            fmt_number(row["latency_ms_median"]), fmt_number(overhead),
            fmt_number(row["macs"] / 1e9 if row["macs"] == row["macs"] else None),
        )
    return table


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help="suite name (from suites/) or path to a suite TOML")
    parser.add_argument("--out", help="results root for the run directory (default from attnbench.toml)")
    parser.add_argument("--device", help="auto, cpu or cuda (overrides the suite)")
    parser.add_argument("--backbone", nargs="+", help="only these backbones of the suite")
    parser.add_argument("--attention", nargs="+", help="only these attention keys or labels of the suite")


@command("run", "run a suite and write a run directory", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    from attnbench.runner import run_suite

    project = project_of(args)
    suite = filter_suite(load_suite(args.suite, project), args.backbone, args.attention, args.device)
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=error_console, transient=True) as progress:
        task = progress.add_task(suite.name, total=None)

        def report_progress(index: int, total: int, case) -> None:
            progress.update(
                task, completed=index, total=total,
                description=f"{case.backbone} {case.attention.label} b{case.batch_size} r{case.resolution}"
                f" {case.dtype} {case.mode}",
            )

        run_dir = run_suite(suite, project, Path(args.out) if args.out else None, report_progress)
    console.print(_summary_table(run_dir))
    console.print(f"run directory: {run_dir}")
    return 0


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
