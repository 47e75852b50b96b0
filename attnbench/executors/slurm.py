"""Comparison groups as SLURM tasks through submitit: one task per group, submitted as a job array, or
with submitit's local executor (`--executor submitit-local`, the same code path on this machine; the
tests use it). Each task runs its group in its own process (executors.base.run_in_worker) and returns
its outcome; the driver polls the tasks, writes each outcome as it arrives (the one writer), and turns a
task that fails, times out or is cancelled into error rows with the reason. A resumed run submits only
the groups with missing cases: the runner hands over nothing else.
"""

from __future__ import annotations

import importlib
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnbench.config import SlurmConfig, SuiteSpec
from attnbench.errors import UsageError
from attnbench.executors.base import GroupOutcome, Waiting, run_in_worker
from attnbench.executors.isolated import WORKER_START_GRACE_S, defining_modules
from attnbench.group import CaseResult, case_row
from attnbench.schedule import Group

POLL_S = {"slurm": 5.0, "local": 0.5}
"""How often the driver looks at its tasks (submitit rate-limits its own calls to sacct)."""
LOCAL_TIMEOUT_MIN = 60
"""submitit-local's time limit per task when the suite sets no max_case_seconds."""


def submitit_module() -> Any:
    try:
        import submitit
    except ImportError:
        raise UsageError(
            "--executor slurm and submitit-local need submitit, which is not installed; "
            "install attnbench's `cluster` extra: pip install 'attnbench[cluster]'"
        ) from None
    return submitit


@dataclass(frozen=True)
class GroupTask:
    """What one task runs, pickled by submitit: a group, and what its process needs to run it as the
    driver would (the driver's import path, for plugins; the modules defining the group's classes)."""

    suite: SuiteSpec
    device: torch.device
    threads: int | None
    group: Group
    facts: bool
    imports: tuple[str, ...]
    paths: tuple[str, ...]


def run_task(task: GroupTask) -> GroupOutcome:
    """A task's body, in its own process on a SLURM node (or here, with submitit-local)."""
    sys.path.extend(path for path in task.paths if path not in sys.path)
    for name in task.imports:
        importlib.import_module(name)
    import submitit

    worker = submitit.JobEnvironment().job_id
    # A driver on a login node without a GPU learns the device from its tasks' facts.
    return run_in_worker(task.suite, task.device, task.threads, task.group, task.facts, worker)


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    return lines[-1] if lines else ""


class Submitit:
    """Groups as submitit tasks; outcomes in finishing order. On SLURM the whole array is submitted at once
    (`array_parallelism` caps how many run); submitit-local starts `parallel` tasks at a time (default 1)."""

    def __init__(self, suite: SuiteSpec, device: torch.device, threads: int | None, folder: Path,
                 config: SlurmConfig, local: bool, parallel: int | None):
        self.submitit = submitit_module()
        self.suite, self.device, self.folder, self.config, self.local = suite, device, folder, config, local
        self.threads = threads if local else (config.cpus_per_task or threads)
        self.parallel = parallel or 1
        self.kind = "local" if local else "slurm"
        self.executor = self._executor()
        self.meta = {
            "executor": {"kind": "submitit-local" if local else "slurm", "folder": str(folder),
                         **({"workers": self.parallel} if local else {})},
            **({"threads": self.threads} if self.threads else {}),
        }

    def _executor(self) -> Any:
        """submitit's executor with the [executor.slurm] parameters (or the local one's)."""
        gpus = self.config.gpus_per_task
        if gpus is None:
            gpus = 1 if self.device.type == "cuda" else 0
        if self.local:
            executor = self.submitit.LocalExecutor(folder=self.folder)
            executor.update_parameters(timeout_min=self._local_timeout_min(), gpus_per_node=gpus)
            return executor
        try:
            executor = self.submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        except RuntimeError as error:  # submitit's "Could not detect srun"
            raise UsageError(f"--executor slurm: {error}; run the driver where sbatch and srun work") from None
        config = self.config
        parameters: dict[str, Any] = {
            "timeout_min": config.timeout_min, "nodes": 1, "tasks_per_node": 1,
            "slurm_gpus_per_task": gpus or None, "cpus_per_task": config.cpus_per_task, "mem_gb": config.mem_gb,
            "slurm_partition": config.partition, "slurm_account": config.account, "slurm_qos": config.qos,
            "slurm_constraint": config.constraint, "slurm_array_parallelism": config.array_parallelism,
            "slurm_setup": list(config.setup) or None, "name": f"attnbench-{self.suite.name}",
        }
        executor.update_parameters(**{key: value for key, value in parameters.items() if value is not None})
        return executor

    def _local_timeout_min(self) -> int:
        """The largest group's time limit (a group holds at most one case per attention entry) and start-up."""
        seconds = self.suite.timing.group_seconds(len(self.suite.grid.attention))
        return math.ceil((seconds + WORKER_START_GRACE_S) / 60) if seconds else LOCAL_TIMEOUT_MIN

    def _task(self, group: Group, facts: bool) -> GroupTask:
        imports = tuple(sorted({name for case in group.cases for name in defining_modules(case)}))
        return GroupTask(self.suite, self.device, self.threads, group, facts, imports,
                         tuple(path for path in sys.path if path))

    def run_groups(
        self, groups: list[Group], facts: bool, waiting: Waiting | None = None
    ) -> Iterator[tuple[Group, GroupOutcome]]:
        executor = self.executor
        queued = list(groups)
        running: dict[Any, Group] = {}
        try:
            while queued or running:
                room = len(queued) if not self.local else self.parallel - len(running)
                if room > 0 and queued:
                    batch, queued = queued[:room], queued[room:]
                    jobs = executor.map_array(run_task, [self._task(group, facts) for group in batch])
                    running.update(zip(jobs, batch))
                finished = [job for job in running if job.done()]
                for job in finished:
                    group = running.pop(job)
                    yield group, self._outcome(job, group)
                if not finished:
                    if waiting:
                        waiting(self._states(running, len(queued)))
                    time.sleep(POLL_S[self.kind])
        finally:
            for job in running:  # interrupted: the driver is the one writer, nobody would collect them
                if not job.done():
                    job.cancel(check=False)

    def _outcome(self, job: Any, group: Group) -> GroupOutcome:
        """The task's outcome, or its failure on every case of its group."""
        if self.local:
            job._results_timeout_s = 0  # no network file system to wait for; a missing result is final
        try:
            return job.result()
        except self.submitit.core.utils.UncompletedJobError as error:
            failed = isinstance(error, self.submitit.core.utils.FailedJobError)
            state = str(job.state)
            if failed:
                reason = f"{self.kind} task {job.job_id} failed: {last_line(str(error).split('You can check full logs')[0])}"
            else:
                log = last_line(job.stderr())
                reason = f"{self.kind} task {job.job_id} ended ({state}) without a result" + (f": {log}" if log else "")
            status = "timeout" if state.upper().startswith("TIMEOUT") else "error"
        rows = [CaseResult({**case_row(case), "status": status, "error": reason, "worker": str(job.job_id)})
                for case in group.cases]
        return GroupOutcome(rows)

    @staticmethod
    def _states(running: dict[Any, Group], queued: int) -> str:
        states: dict[str, int] = {}
        for job in running:
            state = str(job.state).split()[0].lower()
            states[state] = states.get(state, 0) + 1
        parts = [f"{count} {state}" for state, count in sorted(states.items())]
        return ", ".join(parts + ([f"{queued} to submit"] if queued else []))
