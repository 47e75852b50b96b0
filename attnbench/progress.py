"""The progress bar of a running suite, shared by `attnbench run` and `attnbench.run_suite(progress=True)`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from attnbench.runtimes.base import EAGER

if TYPE_CHECKING:
    from attnbench.config import CaseSpec


class BarProgress:
    """The runner's Progress as a rich bar, after one line with the estimated duration."""

    def __init__(self, bar: Progress):
        self.bar, self.task = bar, bar.add_task("starting", total=None)

    def started(self, cases: int, estimated_seconds: float) -> None:
        from attnbench.estimate import describe

        self.bar.console.print(f"attnbench: {cases} cases, estimated at most ~{describe(estimated_seconds)}",
                               markup=False, highlight=False)

    def case(self, done: int, total: int, case: CaseSpec, detail: str = "") -> None:
        self.bar.update(
            self.task, completed=done, total=total, refresh=True,
            description=f"{case.backbone} {case.attention.label} b{case.batch_size} r{case.resolution}"
            f" {case.dtype} {case.mode}" + (f" {case.runtime}" if case.runtime != EAGER else "")
            + (f" ({detail})" if detail else ""),
        )


@contextmanager
def progress_bar(console: Console) -> Iterator[BarProgress]:
    """A transient bar with the current case and ETA. The bar is gone once the block exits, also on an
    error, so that what is printed next stands alone. Not on a terminal (CI logs), a bar would only leave
    a blank line behind: only the estimate line is printed.

    The bar is redrawn when a case starts or ends, never by rich's refresh thread: that thread takes the
    GIL ten times a second, and a timed call waits for it whenever it returns from an operator (which runs
    without the GIL). Measured on resnet18 at 64 px, batch 1, on the CPU, in seven processes alternating
    blocks of paired rounds: under a refreshing bar `none`'s median was -5% to +30% off its median without
    a bar (over +20% in three of the seven); redrawn per case, the bar changes nothing beyond the noise."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, auto_refresh=False,
                  disable=not console.is_terminal) as progress:
        yield BarProgress(progress)
