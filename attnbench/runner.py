"""Runs a suite: plans its comparison groups, hands each to an executor, and appends every case's row as
soon as its group finishes; resume runs what an interrupted run left."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import torch

from attnbench.calibration import noise_floor
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, expand_grid, load_suite, parse_suite
from attnbench.errors import ConfigError, DeviceError, ResultsError
from attnbench.executors import Executor, ExecutorChoice, GroupOutcome, GroupPool, make_executor
from attnbench.guards import Interrupted, interruptible
from attnbench.measure.bandwidth import roofline_columns
from attnbench.measure.env import environment
from attnbench.process import configure_process, resolve_device
from attnbench.results import RunWriter, case_key, read_run, utc_now
from attnbench.schedule import Group, Shard, case_order, plan

ProgressCallback = Callable[..., None]
"""(cases done, cases in all, a case of the group running or just finished[, what a pool is doing])."""


def _execute(
    suite: SuiteSpec, cases: list[CaseSpec], writer: RunWriter, executor: Executor | GroupPool,
    progress: ProgressCallback | None,
) -> Path:
    """Measures `cases` group by group, appending each row as its group finishes; marks the run complete
    or interrupted. Cases that differ only in their attention entry are timed together when the suite
    interleaves (TimingSpec.interleave), in this process, one worker process per group, N local workers or
    submitit tasks (`executor`); with several at once, groups finish in any order."""
    interleave = suite.timing.interleave and "latency" in suite.metrics
    if isinstance(getattr(executor, "meta", None), dict):
        writer.update_meta(**executor.meta)
    status, done = "interrupted", [0]

    def report(case: CaseSpec, detail: str = "") -> None:
        if progress:
            progress(done[0], len(cases), case, *([detail] if detail else []))

    groups = plan(cases, interleave)
    try:
        with interruptible(), closing(_outcomes(executor, groups, "latency" in suite.metrics, writer, report)) as outcomes:
            for group, outcome in outcomes:
                fresh = {key: value for key, value in outcome.meta.items() if writer.meta.get(key) is None}
                if fresh:
                    writer.update_meta(**fresh)
                # A row's roofline uses the bandwidth measured where it ran (each worker measures its own).
                copy_gbs = outcome.meta.get("copy_bandwidth_gbs", writer.meta.get("copy_bandwidth_gbs"))
                for result in outcome.results:
                    result.row.update(roofline_columns(result.row, copy_gbs))
                    if result.sites:
                        writer.append_sites(result.sites)
                    writer.append_case(result.row, result.samples, result.wall_samples, result.rounds)
                done[0] += len(group.cases)
        status = "complete"
    except Interrupted as interruption:
        interruption.run_dir = writer.path
        raise
    finally:
        calibration = noise_floor(read_run(writer.path).cases.to_dict("records"))
        if calibration:
            writer.update_meta(calibration=calibration)
        writer.finish(status)
    return writer.path


def _outcomes(
    executor: Executor | GroupPool, groups: list[Group], latency: bool, writer: RunWriter,
    report: Callable[..., None],
) -> Iterator[tuple[Group, GroupOutcome]]:
    """Each group's outcome as it finishes: one after the other (the first group that can measures the copy
    bandwidth), or from a pool running many at once (each of its workers measures its own)."""
    if not hasattr(executor, "run_groups"):
        for group in groups:
            report(group.cases[0])
            yield group, executor.run(group, latency and not _bandwidth_known(writer.meta))
        return
    if not groups:
        return
    shown = [groups[0].cases[0]]
    report(shown[0])
    with closing(executor.run_groups(groups, latency, lambda detail: report(shown[0], detail))) as finished:
        for group, outcome in finished:
            shown[0] = group.cases[0]
            yield group, outcome
            report(shown[0])


def _executor(
    suite: SuiteSpec, device: torch.device, project: ProjectConfig, choice: ExecutorChoice, results_root: Path,
) -> Executor | GroupPool:
    """Made before the run directory, so that a choice this machine cannot run (too many workers, no
    submitit, no SLURM) is refused without leaving an empty run behind. submitit keeps its pickles and logs
    beside the run directories (its files are named by job id), not in them."""
    return make_executor(
        suite, device, project.threads, suite.timing.isolate_on(device.type), choice, project.slurm,
        project.slurm.folder or results_root / ".submitit",
    )


def _bandwidth_known(meta: dict[str, Any]) -> bool:
    return "copy_bandwidth_gbs" in meta or "copy_bandwidth_error" in meta


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: ProgressCallback | None = None,
    suite_file_fingerprint: str | None = None,
    executor: ExecutorChoice = ExecutorChoice(),
    shard: Shard | None = None,
) -> Path:
    """Runs every case of `suite` (or of one `shard` of its grid) and returns the run directory.

    `suite_file_fingerprint` identifies the suite file as loaded (before --backbone/--attention filters),
    so that a resume can tell whether the file changed since. `executor` says where the groups run.
    """
    device = _resolve_device(suite, project, executor)
    settings = configure_process(project.threads, suite.timing)
    cases = expand_grid(suite, device.type)
    interleave = suite.timing.interleave and "latency" in suite.metrics
    results_root = results_root or project.results_dir
    pool = _executor(suite, device, project, executor, results_root)
    writer = RunWriter.create(
        results_root,
        {
            "suite": suite.raw,
            "suite_fingerprint": suite.fingerprint,
            "suite_source": str(suite.source.resolve()) if suite.source else None,
            "suite_file_fingerprint": suite_file_fingerprint or suite.fingerprint,
            **_environment(device, project.root),
            **settings,
            "isolate": suite.timing.isolate_on(device.type),
            **({"shard": str(shard)} if shard else {}),
            "case_order": case_order(cases, interleave),
        },
    )
    return _execute(suite, shard.select(cases) if shard else cases, writer, pool, progress)


def _resolve_device(suite: SuiteSpec, project: ProjectConfig, executor: ExecutorChoice) -> torch.device:
    """The suite's device; for SLURM, the device of the tasks, which this machine (a login node) may lack."""
    if executor.kind != "slurm" or suite.grid.device == "cpu":
        return resolve_device(suite.grid.device)
    if suite.grid.device == "cuda" or (project.slurm.gpus_per_task or 0) > 0 or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _environment(device: torch.device, root: Path) -> dict[str, Any]:
    """environment(); on a driver without the tasks' GPU, the device's fields come from the first task."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return {**environment(torch.device("cpu"), root), "device": str(device), "device_name": None,
                "cuda": None, "cudnn": None}
    return environment(device, root)


def resume_run(
    run_dir: Path, project: ProjectConfig, force: bool = False, progress: ProgressCallback | None = None,
    executor: ExecutorChoice | None = None,
) -> Path:
    """Runs the cases of an interrupted run that have no row yet, in the same run directory: of its shard
    when it ran one. `executor`: where they run; by default where the run ran."""
    run = read_run(run_dir)
    meta_path = Path(run_dir) / "meta.json"
    if "suite" not in run.meta:
        raise ResultsError(f"{meta_path}: no recorded suite to resume")
    suite = parse_suite(run.meta["suite"], meta_path, project)
    source = run.meta.get("suite_source")
    if source and Path(source).is_file() and not force:
        current = load_suite(source, project)
        if current.fingerprint != run.meta.get("suite_file_fingerprint"):
            raise ConfigError(
                f"suite file {source} changed since run {run.run_id} started; "
                "use --force to finish the recorded grid anyway, or start a new run"
            )
    recorded = run.meta.get("executor") or {}
    if executor is None:
        executor = ExecutorChoice(recorded.get("kind", "process"), recorded.get("workers"))
    device = _resolve_device(suite, project, executor)
    if device.type != run.meta.get("device", device.type).split(":")[0]:
        raise DeviceError(f"run {run.run_id} measured on {run.meta['device']}; it cannot be resumed on {device}")
    configure_process(project.threads, suite.timing)
    done = {case_key(row) for _, row in run.cases.iterrows()}
    cases = expand_grid(suite, device.type)
    if run.meta.get("shard"):
        cases = Shard.parse(run.meta["shard"]).select(cases)
    missing = [case for case in cases if case_key(case.key) not in done]
    pool = _executor(suite, device, project, executor, Path(run_dir).parent)
    writer = RunWriter.reopen(Path(run_dir))
    writer.update_meta(resumed=[*run.meta.get("resumed", []), utc_now()])
    return _execute(suite, missing, writer, pool, progress)
