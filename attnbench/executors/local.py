"""N local workers, each a long-lived spawned process pinned to one GPU (CUDA_VISIBLE_DEVICES, set before
CUDA starts) or to its own share of the CPU cores (sched_setaffinity and torch threads), so that the GPUs
of a node, or the cores of a CPU, run a grid's comparison groups side by side.

concurrent.futures does the scheduling: a pool of N threads, each owning one worker, takes the groups in
grid order as threads come free, and the driver collects each outcome as it finishes and writes it (the
one writer). A group never splits, so a module and its `none` always run on one device. One process pool
shared by all workers was the alternative: it would need device ids handed out through its initializer,
and a worker that dies breaks such a pool for every group in flight without saying which one killed it.
A worker per thread keeps each pin fixed and each crash local to its group, with its exit code.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch

from attnbench.config import SuiteSpec
from attnbench.config.project import available_cores
from attnbench.errors import DeviceError
from attnbench.executors.base import GroupOutcome, InProcess, Waiting, where_ran
from attnbench.executors.isolated import WORKER_START_GRACE_S, crash_message, defining_modules
from attnbench.group import CaseResult, case_row
from attnbench.process import configure_process
from attnbench.schedule import Group

PARENT_POLL_S = 0.5
"""How often a worker checks that the driver is still alive; it exits within that once the driver died."""
WAIT_S = 0.5
"""How often the driver wakes while it waits for groups (progress, signals)."""


@dataclass(frozen=True)
class Pin:
    """Where one worker runs: its id, torch threads, the GPU it sees and the CPU cores it may use."""

    worker: str
    threads: int
    cuda_index: int | None = None
    """The driver's CUDA index of the worker's GPU; None on the CPU."""
    cuda_visible: str | None = None
    """CUDA_VISIBLE_DEVICES in the worker: the driver's entry for that GPU, so the worker sees it as cuda:0."""
    cores: tuple[int, ...] | None = None
    """None when the cores cannot be split into disjoint sets of `threads` (more threads than cores)."""

    def as_meta(self) -> dict[str, Any]:
        return {"worker": self.worker, "threads": self.threads, "cuda_visible_devices": self.cuda_visible,
                "cores": list(self.cores) if self.cores else None}


def plan_pins(device: torch.device, workers: int | None, threads: int | None) -> list[Pin]:
    """One worker per GPU (`workers` of them, by default every visible one), or on the CPU `workers` that
    split the cores (by default one per `threads` cores). Threads per worker: the cores' share, at most
    `threads`; each worker gets its own cores where they divide."""
    cores = available_cores()
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        count = workers or visible
        if count > visible:
            raise DeviceError(
                f"--workers {count}: {visible} CUDA device(s) visible here and each worker needs one of its own; "
                f"accepted: 1 to {visible}"
            )
        entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    else:
        count = workers or max(1, len(cores) // (threads or 1))
        if count > len(cores):
            # Two workers on one core time each other's work: every number of both would be wrong.
            raise DeviceError(
                f"--workers {count}: {len(cores)} CPU core(s) usable here and each worker needs one of its own; "
                f"accepted: 1 to {len(cores)}"
            )
    share = max(1, len(cores) // count)
    per_worker = min(threads, share) if threads else share
    disjoint = count * per_worker <= len(cores)
    pins = []
    for k in range(count):
        mine = tuple(cores[k * per_worker:(k + 1) * per_worker]) if disjoint else None
        if device.type == "cuda":
            pins.append(Pin(str(k), per_worker, k, entries[k] if k < len(entries) else str(k), mine))
        else:
            pins.append(Pin(str(k), per_worker, cores=mine))
    return pins


def _exit_with(parent: int) -> None:
    """A worker whose driver died (SIGKILL, OOM killer) exits too instead of finishing its group for no one."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="attnbench-parent-watch", daemon=True).start()


def _serve(pin: Pin, suite: SuiteSpec, device: torch.device, parent: int, connection: Connection) -> None:
    """A worker process: pinned before anything starts CUDA or torch's thread pools, then one group per
    message until the driver sends None or goes away. Models stay between groups of one backbone."""
    if pin.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = pin.cuda_visible
    if pin.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, pin.cores)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    _exit_with(parent)
    configure_process(pin.threads, suite.timing)
    executor = InProcess(suite, device, pin.worker)
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        group, facts, imports = job
        for name in imports:
            importlib.import_module(name)
        connection.send(executor.run(group, facts))


class WorkersClosed(Exception):
    """The driver stopped the workers (an interruption) while this group ran."""


class Worker:
    """The driver's side of one pinned worker process. When it dies (segfault, os._exit, killed) or hangs
    past the group's time limit (plus start-up) and is killed, a fresh one takes over and each case of the
    group runs again on its own, so the failure (an `error` row with the exit code or signal, or a
    `timeout`) lands on the case that causes it, as with isolated groups. With `fresh`, every group gets a
    new process (the suite isolates groups)."""

    def __init__(self, pin: Pin, suite: SuiteSpec, device: torch.device, fresh: bool):
        self.pin, self.suite, self.device, self.fresh = pin, suite, device, fresh
        on = torch.device("cuda", pin.cuda_index) if pin.cuda_index is not None else torch.device("cpu")
        self.where = where_ran(on, pin.worker)
        self.facts: dict[str, Any] = {}
        """The facts this worker measured once (its device, copy bandwidth), attached to every outcome."""
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None
        self.closed = False
        self.lock = threading.Lock()

    def _start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        ours, theirs = spawn.Pipe()
        process = spawn.Process(
            target=_serve, args=(self.pin, self.suite, self.device, os.getpid(), theirs), daemon=True,
            name=f"attnbench-worker-{self.pin.worker}",
        )
        with self.lock:
            if self.closed:
                raise WorkersClosed()
            process.start()
            self.process, self.connection = process, ours
        theirs.close()  # the worker holds the only other end: its death ends recv with EOFError

    def run(self, group: Group, facts: bool) -> GroupOutcome:
        if self.process is None:
            self._start()
        process, connection = self.process, self.connection
        if process is None or connection is None:  # closed meanwhile
            raise WorkersClosed()
        measure = facts and not self.facts
        imports = sorted({name for case in group.cases for name in defining_modules(case)})
        seconds = self.suite.timing.group_seconds(len(group.cases))
        limit = seconds + WORKER_START_GRACE_S if seconds else None
        started = time.perf_counter()
        try:
            connection.send((group, measure, imports))
            if connection.poll(limit):
                outcome: GroupOutcome = connection.recv()
                if measure:
                    self.facts = dict(outcome.meta)
                outcome.meta = {**outcome.meta, **self.facts}
                if self.fresh:
                    self.stop()
                return outcome
            failure = {"status": "timeout",
                       "error": f"group exceeded its time limit of {seconds:g} s; worker {self.pin.worker} killed"}
        except (EOFError, OSError):
            process.join(timeout=5)
            failure = {"status": "error", "error": crash_message(process.exitcode, f"local worker {self.pin.worker}")}
        self.kill()
        if self.closed:
            raise WorkersClosed()
        if len(group.cases) > 1:
            outcomes = [self.run(Group((case,)), facts) for case in group.cases]
            return GroupOutcome([result for outcome in outcomes for result in outcome.results], dict(self.facts))
        duration = round(time.perf_counter() - started, 3)
        row = {**case_row(group.cases[0]), **failure, "duration_s": duration, **self.where}
        return GroupOutcome([CaseResult(row)], dict(self.facts))

    def stop(self) -> None:
        """Lets the worker finish and exit."""
        process, connection = self.process, self.connection
        if process is None or connection is None:
            return
        try:
            connection.send(None)
        except OSError:
            pass
        process.join(timeout=30)
        self.kill()

    def kill(self) -> None:
        with self.lock:
            process, connection, self.process, self.connection = self.process, self.connection, None, None
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join()
            connection.close()

    def close(self) -> None:
        """Stops the worker now, whatever it is doing; its thread's group raises WorkersClosed."""
        self.closed = True
        self.kill()


class LocalWorkers:
    """Groups on N pinned local workers at once (see the module docstring); outcomes in finishing order."""

    def __init__(self, suite: SuiteSpec, device: torch.device, threads: int | None, isolate: bool, workers: int | None):
        self.suite, self.device, self.fresh = suite, device, isolate
        self.pins = plan_pins(device, workers, threads)
        threads_each = self.pins[0].threads
        self.meta = {
            "executor": {"kind": "local", "workers": len(self.pins), "threads_per_worker": threads_each},
            "threads": threads_each,
            "worker_pins": [pin.as_meta() for pin in self.pins],
        }

    def run_groups(
        self, groups: list[Group], facts: bool, waiting: Waiting | None = None
    ) -> Iterator[tuple[Group, GroupOutcome]]:
        workers = [Worker(pin, self.suite, self.device, self.fresh) for pin in self.pins]
        free: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for worker in workers:
            free.put(worker)
        own = threading.local()

        def claim() -> None:  # each thread of the pool drives one worker for the whole run
            own.worker = free.get_nowait()

        def run(group: Group) -> GroupOutcome:
            return own.worker.run(group, facts)

        pool = ThreadPoolExecutor(len(workers), thread_name_prefix="attnbench-worker", initializer=claim)
        futures = {pool.submit(run, group): group for group in groups}
        order = {future: index for index, future in enumerate(futures)}
        pending, finished = set(futures), False
        try:
            while pending:
                done, pending = wait(pending, timeout=WAIT_S, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=order.__getitem__):
                    yield futures[future], future.result()
                if waiting and pending:
                    busy = min(len(pending), len(workers))
                    waiting(f"{busy} of {len(workers)} workers busy, {len(pending) - busy} groups queued")
            finished = True
        finally:
            for worker in workers:
                worker.stop() if finished else worker.close()
            pool.shutdown(wait=True, cancel_futures=True)
