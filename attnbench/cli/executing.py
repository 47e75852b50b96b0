"""`run`'s arguments for where groups run: local workers, SLURM or submitit-local, a shard, threads."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

from attnbench.config import ProjectConfig
from attnbench.config.project import parse_threads
from attnbench.errors import ConfigError, UsageError
from attnbench.schedule import Shard

if TYPE_CHECKING:
    from attnbench.executors import ExecutorChoice


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", metavar="N|auto", nargs="?", const="auto",
        help="run comparison groups on N local workers at once, each pinned to its own GPU (auto: one per "
        "visible GPU) or, on the CPU, to its own share of the cores; with submitit-local, tasks at once",
    )
    parser.add_argument(
        "--executor",
        help="local: workers on this machine (what --workers implies); slurm: a SLURM job array through "
        "submitit, configured by [executor.slurm] in attnbench.toml; submitit-local: the same path on this machine",
    )
    parser.add_argument(
        "--shard", metavar="I/N",
        help="run only the I-th of N deterministic parts of the grid (whole comparison groups), into its own "
        "run directory; `attnbench merge` joins the parts",
    )
    parser.add_argument(
        "--threads", metavar="N|auto",
        help="torch threads per process or worker; auto = usable cores - 1 (default: attnbench.toml's)",
    )


def executor_choice(args: argparse.Namespace) -> ExecutorChoice | None:
    """What the arguments ask for; None when they name nothing (a resume then runs where the run ran).

    The executors are imported here, not when the command line is parsed: they import torch, which would
    make every command (`--help` too) take seconds to start."""
    from attnbench.executors import EXECUTORS, ExecutorChoice

    accepted = [kind for kind in EXECUTORS if kind != "process"]
    if args.executor is not None and args.executor not in accepted:
        raise UsageError(f"--executor {args.executor!r} is not an executor; accepted: {', '.join(accepted)}")
    workers = _workers(args.workers)
    kind = args.executor or ("local" if args.workers else None)
    if kind is None:
        return None
    if kind == "slurm" and args.workers:
        raise UsageError("--workers does not apply to --executor slurm; cap the tasks running at once with "
                         "array_parallelism in [executor.slurm]")
    return ExecutorChoice(kind, workers)


def _workers(text: str | None) -> int | None:
    if text is None or text == "auto":
        return None
    try:
        workers = int(text)
    except ValueError:
        raise UsageError(f"--workers {text!r}: expected a number of workers or auto") from None
    if workers < 1:
        raise UsageError(f"--workers {text!r}: must be >= 1")
    return workers


def shard_of(args: argparse.Namespace) -> Shard | None:
    if args.shard is None:
        return None
    if args.resume:
        raise UsageError("--shard goes with --suite; --resume of a shard's run resumes that shard")
    return Shard.parse(args.shard)


def with_threads(args: argparse.Namespace, project: ProjectConfig) -> ProjectConfig:
    if args.threads is None:
        return project
    try:
        return replace(project, threads=parse_threads(args.threads, f"--threads {args.threads}"))
    except ConfigError as error:
        raise UsageError(str(error)) from None
