"""Each comparison group in a fresh `spawn`ed process, so that allocator state and cuDNN's algorithm
choices do not leak between groups, while a module and its `none` are still timed together."""

from __future__ import annotations

import importlib
import multiprocessing
import signal
import time
from multiprocessing.connection import Connection

import torch

from attnbench.backbones import get_backbone
from attnbench.config import CaseSpec, SuiteSpec
from attnbench.executors.base import GroupOutcome, run_in_worker, where_ran
from attnbench.group import CaseResult, case_row
from attnbench.modules import BASELINE, NATIVE, get_attention
from attnbench.schedule import Group

WORKER_START_GRACE_S = 120.0
"""Beyond the group's time limit, time a worker may take to start (imports) before the parent kills it."""


def defining_modules(case: CaseSpec) -> list[str]:
    """Modules a fresh process must import to find the case's attention class and backbone builder
    (registered outside attnbench, e.g. by a plugin or a test)."""
    defined = [get_backbone(case.backbone).build.__module__]
    if case.attention.key not in (BASELINE, NATIVE):
        defined.append(get_attention(case.attention.key).cls.__module__)
    return sorted({name for name in defined if not name.startswith("attnbench.")})


def _worker(
    suite: SuiteSpec, device: torch.device, threads: int | None, group: Group, facts: bool,
    imports: list[str], connection: Connection,
) -> None:
    """Runs in a spawned process: one group, the outcome sent back through the pipe."""
    for name in imports:
        importlib.import_module(name)
    connection.send(run_in_worker(suite, device, threads, group, facts))
    connection.close()


def crash_message(exitcode: int | None, who: str = "the isolated worker process") -> str:
    if exitcode is not None and exitcode < 0:
        try:
            cause = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            cause = f"killed by signal {-exitcode}"
    else:
        cause = f"exited with code {exitcode}"
    return f"{who} {cause} before reporting a result"


class Isolated:
    """A spawned worker per group. When a worker dies (segfault, os._exit) or hangs past the group's time
    limit (plus start-up) and is killed, each case of the group runs again in a worker of its own; a
    case whose worker dies is an error row, one whose worker hangs a timeout row."""

    def __init__(self, suite: SuiteSpec, device: torch.device, threads: int | None):
        self.suite, self.device, self.threads = suite, device, threads

    def run(self, group: Group, facts: bool) -> GroupOutcome:
        spawn = multiprocessing.get_context("spawn")
        receiver, sender = spawn.Pipe(duplex=False)
        imports = sorted({name for case in group.cases for name in defining_modules(case)})
        worker = spawn.Process(
            target=_worker,
            args=(self.suite, self.device, self.threads, group, facts, imports, sender),
            daemon=True,
        )
        started = time.perf_counter()
        worker.start()
        sender.close()  # the child holds the only write end: its death ends recv with EOFError
        seconds = self.suite.timing.group_seconds(len(group.cases))
        limit = seconds + WORKER_START_GRACE_S if seconds else None
        try:
            if receiver.poll(limit):
                return receiver.recv()
            failure = {"status": "timeout", "error": f"group exceeded its time limit of {seconds:g} s; worker killed"}
        except EOFError:
            worker.join()
            failure = {"status": "error", "error": crash_message(worker.exitcode)}
        finally:
            receiver.close()
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join()
        if len(group.cases) > 1:
            # Each case in a worker of its own, so that the failure lands on the case that causes it.
            outcomes = [self.run(Group((case,)), facts) for case in group.cases]
            return GroupOutcome(
                [result for outcome in outcomes for result in outcome.results],
                next((outcome.meta for outcome in outcomes if outcome.meta), {}),
            )
        duration = round(time.perf_counter() - started, 3)
        row = {**case_row(group.cases[0]), **failure, "duration_s": duration, **where_ran(self.device, "0")}
        return GroupOutcome([CaseResult(row)])
