"""`attnbench list`: registered attention modules, backbones, runtimes and suites."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.cli.base import command, console, project_of
from attnbench.config import BUILT_IN_SUITES, ProjectConfig, load_suite, suite_files
from attnbench.errors import AttnbenchError
from attnbench.terminal import Column, FittedTable

if TYPE_CHECKING:
    from attnbench.accuracy import AccuracyRow

LISTED_CHANNELS = 256
"""The channel count at which `list attention` evaluates each formula (a ResNet-50 layer1 block)."""


def _list_attention(project: ProjectConfig) -> FittedTable:
    from attnbench.accuracy import accuracy_rows
    from attnbench.modules import ATTENTION

    gains = _published_gains(accuracy_rows(project))
    # Keys, placements and options stay whole; the formula, the gains and the paper wrap at spaces, and in a
    # narrow terminal the paper goes first, then the gains.
    table = FittedTable([
        Column("key"),
        Column("placement, default options", priority=1),
        Column(f"params (at C={LISTED_CHANNELS})", "text", priority=1, min_width=14),
        Column("published top-1 gain", "text", priority=2, min_width=13),
        Column("paper", "text", priority=3, min_width=14),
    ], caption=_gains_caption())
    for key, spec in ATTENTION.items():
        options = "\n".join(f"{name}={value!r}" for name, value in spec.defaults.items()) or "-"
        try:
            params = f"{spec.param_count(LISTED_CHANNELS):,}"
        except AttnbenchError:
            params = "-"
        paper = f"{spec.paper.title} ({spec.paper.venue} {spec.paper.year})"
        table.add_row(key, f"{spec.placement}\n{options}", f"{spec.formula}\n= {params}", gains.get(key, "-"), paper,
                      end_section=True)
    return table


def _gains_caption() -> str:
    from attnbench.accuracy import BACKBONE_SHORT

    names = ", ".join(f"{short} = {backbone}" for backbone, short in BACKBONE_SHORT.items())
    return f"published top-1 gain: over the plain backbone, in points, with its source; {names}"


LISTED_GAINS = 2
"""Backbones whose published gain `list attention` shows per module; the rest are counted."""


def _published_gains(rows: tuple[AccuracyRow, ...]) -> dict[str, str]:
    """Per attention key: the first gain (lab rows first) in each backbone, e.g. "+1.11 pp X50 (SKNet)"."""
    from attnbench.accuracy import short_backbone
    from attnbench.modules import BASELINE

    firsts: dict[str, dict[str, AccuracyRow]] = {}
    for row in rows:
        if row.attention != BASELINE:
            firsts.setdefault(row.attention, {}).setdefault(row.backbone, row)
    cells = {}
    for key, by_backbone in firsts.items():
        shown = [f"{row.gain_text()} pp {short_backbone(row.backbone)} ({row.source})"
                 for row in list(by_backbone.values())[:LISTED_GAINS]]
        more = len(by_backbone) - LISTED_GAINS
        cells[key] = "\n".join(shown + ([f"+{more} more"] if more > 0 else []))
    return cells


def _list_backbones(project: ProjectConfig) -> FittedTable:
    from attnbench.backbones import BACKBONES, PLACEMENTS, native_summary

    table = FittedTable([
        Column("backbone"), Column("family", priority=2), Column("min resolution", "number", priority=1),
        Column("placements", "text", min_width=16), Column("native attention", "text", min_width=14),
    ])
    for name, spec in BACKBONES.items():
        placements = [p for p, by_family in PLACEMENTS.items() if spec.family in by_family]
        native = native_summary(name) or "-"
        table.add_row(name, spec.family, str(spec.min_resolution), ", ".join(placements), native)
    return table


def _shown(folder: Path) -> str:
    """A folder as the user would type it: relative to the current directory when inside it."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(folder)


def _list_suites(project: ProjectConfig) -> FittedTable:
    table = FittedTable([
        Column("suite"), Column("cases", "number", priority=1), Column("metrics", "text", priority=2, min_width=12),
        Column("from", "text", priority=3, min_width=8), Column("description", "text", priority=4, min_width=20),
    ])
    for name, path in suite_files(project).items():
        where = "built-in" if path.parent == BUILT_IN_SUITES else _shown(path.parent)
        try:
            suite = load_suite(str(path), project)
        except AttnbenchError as error:  # one broken file must not hide the others
            table.add_row(name, "-", "-", where, f"cannot be loaded: {error}")
            continue
        table.add_row(name, str(suite.grid.case_count), ", ".join(suite.metrics), where, suite.description)
    return table


def _list_runtimes(project: ProjectConfig) -> FittedTable:
    from attnbench.runtimes import RUNTIMES
    from attnbench.runtimes.base import DEPLOY_EXTRA

    table = FittedTable([
        Column("runtime"), Column("what runs the model", "text", priority=3, min_width=16),
        Column("devices: dtypes", "text", min_width=14), Column("modes", priority=2),
        Column("installed", "text", priority=1, min_width=10),
    ])
    for name, spec in RUNTIMES.items():
        devices = "\n".join(f"{device}: {', '.join(dtypes)}" for device, dtypes in spec.dtypes.items())
        missing = spec.missing()
        installed = f"no: {DEPLOY_EXTRA if spec.extra else spec.install}" if missing else "yes"
        table.add_row(name, spec.description, devices, ", ".join(spec.modes), installed, end_section=True)
    return table


LISTINGS = {"attention": _list_attention, "backbones": _list_backbones, "runtimes": _list_runtimes,
            "suites": _list_suites}


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=list(LISTINGS))


@command("list", "list registered attention modules, backbones, runtimes or suites", _configure_list)
def cmd_list(args: argparse.Namespace) -> int:
    console.print(LISTINGS[args.what](project_of(args)), crop=False)
    return 0
