"""What an executor does: run one comparison group somewhere and hand back its results."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch

from attnbench.config import SlurmConfig, SuiteSpec
from attnbench.group import CaseResult, GroupRunner, attempt
from attnbench.measure import MeasureContext
from attnbench.measure.bandwidth import copy_bandwidth_gbs
from attnbench.measure.env import device_environment
from attnbench.process import configure_process, release_memory
from attnbench.schedule import Group


@dataclass
class GroupOutcome:
    """A group's results, and the process-level measurements taken with it (copy bandwidth)."""

    results: list[CaseResult]
    meta: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    def run(self, group: Group, facts: bool) -> GroupOutcome:
        """Runs the group; `facts`: also measure the process's facts (the device, copy bandwidth)."""
        ...


def process_facts(device: torch.device, bandwidth: bool) -> dict[str, Any]:
    """meta.json's facts that only the process running the cases can measure."""
    return {**device_environment(device), **(measured_bandwidth(device) if bandwidth else {}), "process_facts": True}


Waiting = Callable[[str], None]
"""Called while a pool waits for groups to finish, with what is running and queued (for a progress bar)."""


class GroupPool(Protocol):
    """An executor that runs many groups at once (local workers, submitit) and hands back each group's
    outcome as it finishes, in any order; the runner stays the one writer. Every outcome's meta carries the
    facts of the process or device that ran it (its device, copy bandwidth: measured there once) when
    `facts`."""

    meta: dict[str, Any]
    """What meta.json records about the pool: workers, threads per worker, ..."""

    def run_groups(
        self, groups: list[Group], facts: bool, waiting: Waiting | None = None
    ) -> Iterator[tuple[Group, GroupOutcome]]: ...


EXECUTORS = ("process", "local", "slurm", "submitit-local")


@dataclass(frozen=True)
class ExecutorChoice:
    """Where a run's groups go. `process`: this process, or a fresh spawned process per group when the suite
    isolates; `local`: `workers` long-lived workers, each pinned to a GPU or to a share of the CPU cores
    (None: one per visible GPU, on the CPU one per `threads` cores); `slurm`: a SLURM job array through
    submitit; `submitit-local`: the same submitit path on this machine, `workers` tasks at a time."""

    kind: str = "process"
    workers: int | None = None


@cache
def _host() -> str:
    return socket.gethostname()


@cache
def _cpu_name() -> str:
    from attnbench.measure.env import cpu_model

    return cpu_model()


def physical_cuda_index(index: int) -> int | str:
    """A CUDA index of this process in the machine's numbering: through CUDA_VISIBLE_DEVICES when it names
    devices by number (a UUID is returned as it is)."""
    visible = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    if index < len(visible):
        return int(visible[index]) if visible[index].isdigit() else visible[index]
    return index


def where_ran(device: torch.device, worker: str) -> dict[str, Any]:
    """The columns saying where a case ran: host, device index (CUDA, in the machine's numbering; empty on
    the CPU), device name and worker. Not part of the case key: the same case elsewhere is the same case."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"host": _host(), "device_index": physical_cuda_index(index),
                "device_name": torch.cuda.get_device_name(index), "worker": worker}
    return {"host": _host(), "device_index": None, "device_name": _cpu_name(), "worker": worker}


def measured_bandwidth(device: torch.device) -> dict[str, Any]:
    """meta.json's copy bandwidth; a failure (out of memory on a full device) is recorded, not raised."""
    found: list[dict[str, Any]] = []
    probe = CaseResult({})
    attempt(lambda: found.append(copy_bandwidth_gbs(device, time.perf_counter)), None, probe)
    release_memory(device)
    return found[0] if found else {"copy_bandwidth_error": probe.row.get("error", "")}


class InProcess:
    """Groups run in this process, one after the other, keeping models between groups of a backbone."""

    def __init__(self, suite: SuiteSpec, device: torch.device, worker: str = "0"):
        self.device, self.worker = device, worker
        self.bandwidth = "latency" in suite.metrics
        self.runner = GroupRunner(suite.metrics, MeasureContext(timing=suite.timing, device=device))

    def run(self, group: Group, facts: bool) -> GroupOutcome:
        meta = process_facts(self.device, self.bandwidth) if facts else {}
        results = self.runner.run(group)
        where = where_ran(self.device, self.worker)
        for result in results:
            result.row.update(where)
        return GroupOutcome(results, meta)


def make_executor(
    suite: SuiteSpec, device: torch.device, threads: int | None, isolate: bool,
    choice: ExecutorChoice = ExecutorChoice(), slurm: SlurmConfig = SlurmConfig(), folder: Path | None = None,
) -> Executor | GroupPool:
    """`folder`: where submitit keeps its files."""
    if choice.kind == "local":
        from attnbench.executors.local import LocalWorkers

        return LocalWorkers(suite, device, threads, isolate, choice.workers)
    if choice.kind in ("slurm", "submitit-local"):
        from attnbench.executors.slurm import Submitit

        assert folder is not None, "submitit needs a folder"
        return Submitit(suite, device, threads, folder, slurm, local=choice.kind == "submitit-local",
                        parallel=choice.workers)
    if isolate:
        from attnbench.executors.isolated import Isolated

        return Isolated(suite, device, threads)
    return InProcess(suite, device)


def run_in_worker(
    suite: SuiteSpec, device: torch.device, threads: int | None, group: Group, facts: bool, worker: str = "0",
) -> GroupOutcome:
    """One group in a fresh process, configured as the runner's own; `facts`: also measure the process's
    facts (the device, copy bandwidth)."""
    configure_process(threads, suite.timing)
    return InProcess(suite, device, worker).run(group, facts)
