"""What an executor does: run one comparison group somewhere and hand back its results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from attnbench.config import SuiteSpec
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
    def run(self, group: Group, first: bool) -> GroupOutcome:
        """Runs the group; `first`: also measure what the run records once (the device, copy bandwidth)."""
        ...


def process_facts(device: torch.device, bandwidth: bool) -> dict[str, Any]:
    """meta.json's facts that only the process running the cases can measure."""
    return {**device_environment(device), **(measured_bandwidth(device) if bandwidth else {}), "process_facts": True}


def measured_bandwidth(device: torch.device) -> dict[str, Any]:
    """meta.json's copy bandwidth; a failure (out of memory on a full device) is recorded, not raised."""
    found: list[dict[str, Any]] = []
    probe = CaseResult({})
    attempt(lambda: found.append(copy_bandwidth_gbs(device, time.perf_counter)), None, probe)
    release_memory(device)
    return found[0] if found else {"copy_bandwidth_error": probe.row.get("error", "")}


class InProcess:
    """Groups run in this process, one after the other, keeping models between groups of a backbone."""

    def __init__(self, suite: SuiteSpec, device: torch.device):
        self.device = device
        self.bandwidth = "latency" in suite.metrics
        self.runner = GroupRunner(suite.metrics, MeasureContext(timing=suite.timing, device=device))

    def run(self, group: Group, first: bool) -> GroupOutcome:
        meta = process_facts(self.device, self.bandwidth) if first else {}
        return GroupOutcome(self.runner.run(group), meta)


def make_executor(suite: SuiteSpec, device: torch.device, threads: int | None, isolate: bool) -> Executor:
    if isolate:
        from attnbench.executors.isolated import Isolated

        return Isolated(suite, device, threads)
    return InProcess(suite, device)


def run_in_worker(suite: SuiteSpec, device: torch.device, threads: int | None, group: Group, first: bool) -> GroupOutcome:
    """One group in a fresh process, configured as the runner's own."""
    configure_process(threads, suite.timing)
    return InProcess(suite, device).run(group, first)
