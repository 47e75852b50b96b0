"""The progress bar of a running suite, shared by `attnbench run` and `attnbench.run_suite(progress=True)`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from attnbench.config import CaseSpec
    from attnbench.runner import ProgressCallback


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressCallback]:
    """A transient bar with the current case and ETA; yields the runner's progress callback. The bar is
    gone once the block exits, also on an error, so that what is printed next stands alone."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def report(index: int, total: int, case: CaseSpec) -> None:
            progress.update(
                task, completed=index, total=total,
                description=f"{case.backbone} {case.attention.label} b{case.batch_size} r{case.resolution}"
                f" {case.dtype} {case.mode}",
            )

        yield report
