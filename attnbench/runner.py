"""Runs a suite: plans its comparison groups, hands each to an executor, and appends every case's row as
soon as its group finishes; resume runs what an interrupted run left."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from attnbench.calibration import noise_floor
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, expand_grid, load_suite, parse_suite
from attnbench.errors import ConfigError, DeviceError, ResultsError
from attnbench.estimate import estimate_seconds
from attnbench.executors import Executor, ExecutorChoice, GroupOutcome, GroupPool, make_executor
from attnbench.signals import Interrupted, deferred_signals, interruptible
from attnbench.measure.bandwidth import roofline_columns
from attnbench.measure.env import environment
from attnbench.process import configure_process, resolve_device
from attnbench.results import RunWriter, case_key, read_run, utc_now
from attnbench.runtimes.axis import compile_era_fingerprint
from attnbench.schedule import Group, Shard, case_order, plan


class Progress(Protocol):
    """What a run tells whoever watches it (the CLI's progress bar); the API watches nothing by default."""

    def started(self, cases: int, estimated_seconds: float) -> None:
        """Before the first case: how many will run, and roughly how long they take at most."""

    def case(self, done: int, total: int, case: CaseSpec, detail: str = "") -> None:
        """As groups start and finish: how many cases are done, a case of the group running or just
        finished, and what a pool is doing (`detail`: how many tasks are running, queued, ...)."""


def _execute(
    suite: SuiteSpec, cases: list[CaseSpec], writer: RunWriter, executor: Executor | GroupPool,
    progress: Progress | None,
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
            progress.case(done[0], len(cases), case, detail)

    if progress:
        progress.started(len(cases), estimate_seconds(suite, writer.meta["device"].split(":")[0], cases))
    groups = plan(cases, interleave)
    try:
        with interruptible():
            try:
                with closing(_outcomes(executor, groups, writer, report)) as outcomes:
                    for group, outcome in outcomes:
                        _append(writer, outcome)
                        done[0] += len(group.cases)
                status = "complete"
            finally:
                with deferred_signals():  # a Ctrl-C now waits for meta.json's last words and the lock
                    writer.finish(status, **_calibration(writer.path))
    except Interrupted as interruption:
        interruption.run_dir = writer.path
        raise
    return writer.path


def _append(writer: RunWriter, outcome: GroupOutcome) -> None:
    """A finished group's rows, samples and attention sites into the run directory."""
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


def _outcomes(
    executor: Executor | GroupPool, groups: list[Group], writer: RunWriter, report: Callable[..., None],
) -> Iterator[tuple[Group, GroupOutcome]]:
    """Each group's outcome as it finishes: one after the other (the first group measures the facts of
    the process running them), or from a pool running many at once (each of its workers measures its own)."""
    if not hasattr(executor, "run_groups"):
        for group in groups:
            report(group.cases[0])
            yield group, executor.run(group, not writer.meta.get("process_facts"))
        if groups:
            report(groups[-1].cases[0])  # the end: every case done
        return
    if not groups:
        return
    shown = [groups[0].cases[0]]
    report(shown[0])
    with closing(executor.run_groups(groups, True, lambda detail: report(shown[0], detail))) as finished:
        for group, outcome in finished:
            shown[0] = group.cases[0]
            yield group, outcome
            report(shown[0])


def _calibration(run_dir: Path) -> dict[str, Any]:
    """meta.json's noise floor, from the A/A twin's rows of the whole run (those of earlier resumes too)."""
    try:
        calibration = noise_floor(read_run(run_dir).cases.to_dict("records"))
    except ResultsError:  # a damaged file is the reader's to report; the run must still be closed
        return {}
    return {"calibration": calibration} if calibration else {}


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


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: Progress | None = None,
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
            **environment(device, project.root),
            **settings,
            "isolate": suite.timing.isolate_on(device.type),
            "left_out": [asdict(item) for item in suite.left_out],
            **({"shard": str(shard)} if shard else {}),
            "case_order": case_order(cases, interleave),
        },
    )
    return _execute(suite, shard.select(cases) if shard else cases, writer, pool, progress)


def _resolve_device(suite: SuiteSpec, project: ProjectConfig, executor: ExecutorChoice) -> torch.device:
    """The suite's device; for SLURM, the device of the tasks, which this machine (a login node) may lack."""
    if executor.kind != "slurm" or suite.grid.device == "cpu":
        return resolve_device(
            suite.grid.device, f"suite {suite.name!r} runs on device {suite.grid.device!r} (its grid.device or --device)"
        )
    if suite.grid.device == "cuda" or (project.slurm.gpus_per_task or 0) > 0 or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass(frozen=True)
class Resumed:
    """What a resume did: the cases it measured (none: the grid had a row for each), and what it found
    and repaired in the run's files."""

    path: Path
    measured: int
    warnings: tuple[str, ...] = ()


def resume_run(
    run_dir: Path, project: ProjectConfig, force: bool = False, progress: Progress | None = None,
    executor: ExecutorChoice | None = None,
) -> Resumed:
    """Runs the cases of an interrupted run that have no row yet (or a bad one), in the same run directory:
    of its shard when it ran one. `executor`: where they run; by default where the run ran.

    A complete run with a row for every case is left as it is. The run is locked from before its rows
    are read until it ends, so a second writer is refused instead of measuring the same cases again.
    """
    run = read_run(run_dir, repair=True)  # to refuse before locking anything
    meta_path = Path(run_dir) / "meta.json"
    if "suite" not in run.meta:
        raise ResultsError(f"{meta_path}: no recorded suite to resume")
    suite = parse_suite(run.meta["suite"], meta_path, project)
    source = run.meta.get("suite_source")
    if source and Path(source).is_file() and not force:
        current = load_suite(source, project)
        started_with = run.meta.get("suite_file_fingerprint")
        if started_with not in (current.fingerprint, compile_era_fingerprint(current)):
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
    pool = _executor(suite, device, project, executor, Path(run_dir).parent)
    writer, run = RunWriter.reopen(Path(run_dir))
    try:
        done = {case_key(row) for _, row in run.cases.iterrows()}
        cases = expand_grid(suite, device.type)
        if run.meta.get("shard"):
            cases = Shard.parse(run.meta["shard"]).select(cases)
        missing = [case for case in cases if case_key(case.key) not in done]
        intact = not run.dropped and len(run.samples) == run.samples_on_disk
        if not missing and intact and run.meta.get("status") == "complete":
            writer.close()
            return Resumed(writer.path, 0)
        writer.repair(run)
        writer.update_meta(status="running", resumed=[*run.meta.get("resumed", []), utc_now()])
    except BaseException:
        writer.close()
        raise
    _execute(suite, missing, writer, pool, progress)
    return Resumed(writer.path, len(missing), tuple(run.warnings))
