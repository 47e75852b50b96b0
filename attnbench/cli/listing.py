"""`attnbench list`: registered attention modules, backbones and suites."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.table import Table

from attnbench.cli.base import command, console, project_of
from attnbench.config import ProjectConfig, list_suites, load_suite
from attnbench.errors import AttnbenchError

if TYPE_CHECKING:
    from attnbench.accuracy import AccuracyRow

LISTED_CHANNELS = 256
"""The channel count at which `list attention` evaluates each formula (a ResNet-50 layer1 block)."""


def _list_attention(project: ProjectConfig) -> Table:
    from attnbench.accuracy import accuracy_rows
    from attnbench.modules import ATTENTION

    gains = _published_gains(accuracy_rows(project))
    table = Table(show_lines=True)
    # Every column but the key may wrap, so that all of them fit an 80-character terminal.
    table.add_column("key", no_wrap=True)
    table.add_column("paper", min_width=10, max_width=34)
    table.add_column("placement, default options", min_width=10, overflow="fold")
    table.add_column(f"params (at C={LISTED_CHANNELS})", min_width=10, max_width=30)
    table.add_column("published top-1 gain", min_width=13, max_width=24, overflow="fold")
    for key, spec in ATTENTION.items():
        options = "\n".join(f"{name}={value!r}" for name, value in spec.defaults.items()) or "-"
        try:
            params = f"{spec.param_count(LISTED_CHANNELS):,}"
        except AttnbenchError:
            params = "-"
        paper = f"{spec.paper.title} ({spec.paper.venue} {spec.paper.year})"
        table.add_row(key, paper, f"{spec.placement}\n{options}", f"{spec.formula}\n= {params}", gains.get(key, "-"))
    return table


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


def _list_backbones(project: ProjectConfig) -> Table:
    from attnbench.backbones import BACKBONES, PLACEMENTS

    table = Table("backbone", "family", "min resolution", "placements")
    for name, spec in BACKBONES.items():
        placements = [p for p, by_family in PLACEMENTS.items() if spec.family in by_family]
        table.add_row(name, spec.family, str(spec.min_resolution), ", ".join(placements))
    return table


def _list_suites(project: ProjectConfig) -> Table:
    table = Table("suite", "description", "metrics", "cases")
    for name in list_suites(project):
        try:
            suite = load_suite(name, project)
        except AttnbenchError as error:  # one broken file must not hide the others
            table.add_row(name, f"cannot be loaded: {error}", "-", "-")
            continue
        table.add_row(name, suite.description, ", ".join(suite.metrics), str(suite.grid.case_count))
    return table


LISTINGS = {"attention": _list_attention, "backbones": _list_backbones, "suites": _list_suites}


def _configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=list(LISTINGS))


@command("list", "list registered attention modules, backbones or suites", _configure_list)
def cmd_list(args: argparse.Namespace) -> int:
    console.print(LISTINGS[args.what](project_of(args)))
    return 0
