"""What every command shares: the command registry, the consoles, the project configuration."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from attnbench.config import ProjectConfig, load_project
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


def project_of(args: argparse.Namespace) -> ProjectConfig:
    return load_project(Path(args.config) if args.config else None)


def print_warnings(warnings: Iterable[str]) -> None:
    """What the library found and worked around (rows written twice, runs of other suites, ...): one
    line each on stderr."""
    for warning in warnings:
        error_console.print(f"attnbench: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
