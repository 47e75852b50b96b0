"""`attnbench profile`: where the time of one model goes, under torch.profiler."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from attnbench.cli.base import command, console, project_of
from attnbench.config import DEVICES, DTYPES, MODES, CaseSpec, attention_entry, parse_option
from attnbench.errors import DeviceError, OptionError, ResultsError, UsageError
from attnbench.outputs import prepare_output, write_text

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
    from attnbench.config import make_case

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
    return make_case(
        args.backbone, entry, batch_size=args.batch, resolution=args.resolution, dtype=args.dtype, mode=args.mode,
        device=device,
    )


def _rich_table(title: str, frame) -> Table:
    from attnbench.report.format import fmt_number

    table = Table(title=title, title_justify="left")
    for index, column in enumerate(frame.columns):
        table.add_column(column, no_wrap=index == 0)  # operator names are what the table is read for
    for row in frame.itertuples(index=False):
        table.add_row(*(fmt_number(value) for value in row))
    return table


@command("profile", "profile one model: top operators, launches per step, time inside attention", _configure_profile)
def cmd_profile(args: argparse.Namespace) -> int:
    from attnbench.group import failure
    from attnbench.measure.profile import profile_against_baseline
    from attnbench.process import configure_process, resolve_device
    from attnbench.report.profile_section import PROFILE_NOTE, profile_markdown, profile_tables

    project = project_of(args)
    device = resolve_device(args.device or project.device)
    case = _profile_case(args, device.type)
    # Checked before the profile runs, so that a path it cannot write never wastes it.
    trace = prepare_output(Path(args.trace), "--trace") if args.trace else None
    out = prepare_output(Path(args.out), "--out") if args.out else None
    if trace and out and trace.resolve() == out.resolve():
        raise UsageError(f"--trace and --out name the same file {trace}; give each its own")
    if trace:
        trace.unlink(missing_ok=True)  # an earlier trace must not pass for this one
    configure_process(project.threads, project.timing)
    try:
        result, baseline = profile_against_baseline(
            case, device, project.timing, warmup=args.warmup, steps=args.steps, trace=trace
        )
    except (RuntimeError, MemoryError) as error:
        failed = failure(error)
        if failed["status"] != "oom":
            raise
        raise DeviceError(
            f"out of memory profiling batch {case.batch_size} at {case.resolution} px on {device} "
            f"({failed['error']}); accepted: a smaller --batch or --resolution"
        ) from None
    tables = profile_tables(result, baseline, case.backbone, args.top)
    heading = (
        f"{case.backbone} + {case.attention.label}, batch {case.batch_size}, {case.resolution} px, {case.dtype}, "
        f"{case.mode}, {device} ({args.steps} profiled steps)"
    )
    console.print(f"[bold]{heading}[/bold]\n{PROFILE_NOTE}")
    for title, frame in tables:
        console.print(_rich_table(title, frame))
    if trace:
        if not trace.is_file():  # torch.profiler reports a failed export on stderr only
            raise ResultsError(f"--trace {trace}: torch.profiler wrote no trace there")
        console.print(f"trace written to {trace} (open in https://ui.perfetto.dev or chrome://tracing)",
                      markup=False, highlight=False, soft_wrap=True)
    if out:
        write_text(out, profile_markdown(heading, tables), "--out")
        console.print(f"tables written to {out}", markup=False, highlight=False, soft_wrap=True)
    return 0
