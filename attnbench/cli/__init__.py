"""Command line: each command parses its arguments, calls library functions and returns an exit code.

One file per command; importing them registers them in COMMANDS.
"""

from __future__ import annotations

import argparse
import sys

from attnbench.cli.base import COMMANDS, error_console
from attnbench.errors import AttnbenchError
from attnbench.signals import quit_on_stop_signals

from attnbench.cli import run, report, compare, calibrate, latest, merge, listing, profile, gpu_check  # noqa: E402,F401,I001  (registers the commands in this order)

class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line, like every other error, saying where to read more
    (argparse's own prints the whole usage block first). Subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def entry() -> None:
    """The console script: the command, then an exit that a late Ctrl-C cannot turn into a traceback
    (main itself leaves the signal handlers alone, for Python callers)."""
    code = main()
    quit_on_stop_signals()
    sys.exit(code)
