"""Runs a suite: plans its comparison groups, hands each to an executor, and appends every case's row as
soon as its group finishes; resume runs what an interrupted run left."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from attnbench.calibration import noise_floor
from attnbench.config import CaseSpec, ProjectConfig, SuiteSpec, expand_grid, load_suite, parse_suite
from attnbench.errors import ConfigError, DeviceError, ResultsError
from attnbench.estimate import estimate_seconds
from attnbench.executors import make_executor
from attnbench.guards import Interrupted, interruptible
from attnbench.measure.bandwidth import roofline_columns
from attnbench.measure.env import environment
from attnbench.process import configure_process, resolve_device
from attnbench.results import RunWriter, case_key, read_run, utc_now
from attnbench.schedule import plan


class Progress(Protocol):
    """What a run tells whoever watches it (the CLI's progress bar); the API watches nothing by default."""

    def started(self, cases: int, estimated_seconds: float) -> None:
        """Before the first case: how many will run, and roughly how long they take at most."""

    def case(self, done: int, total: int, case: CaseSpec) -> None:
        """Before each group: how many cases are done, and the next one."""


def _execute(
    suite: SuiteSpec, cases: list[CaseSpec], writer: RunWriter, device: torch.device,
    progress: Progress | None, threads: int | None,
) -> Path:
    """Measures `cases` group by group, appending each row as its group finishes; marks the run complete
    or interrupted. Cases that differ only in their attention entry are timed together when the suite
    interleaves (TimingSpec.interleave), in this process or one worker process per group."""
    isolate = writer.meta["isolate"]
    interleave = suite.timing.interleave and "latency" in suite.metrics
    status, done = "interrupted", 0
    if progress:
        progress.started(len(cases), estimate_seconds(suite, device.type, cases))
    try:
        executor = make_executor(suite, device, threads, isolate)
        with interruptible():
            for group in plan(cases, interleave):
                if progress:
                    progress.case(done, len(cases), group.cases[0])
                outcome = executor.run(group, not writer.meta.get("process_facts"))
                if outcome.meta:
                    writer.update_meta(**outcome.meta)
                for result in outcome.results:
                    result.row.update(roofline_columns(result.row, writer.meta.get("copy_bandwidth_gbs")))
                    if result.sites:
                        writer.append_sites(result.sites)
                    writer.append_case(result.row, result.samples, result.wall_samples, result.rounds)
                done += len(group.cases)
        status = "complete"
    except Interrupted as interruption:
        interruption.run_dir = writer.path
        raise
    finally:
        writer.finish(status, **_calibration(writer.path))
    return writer.path


def _calibration(run_dir: Path) -> dict[str, Any]:
    """meta.json's noise floor, from the A/A twin's rows of the whole run (those of earlier resumes too)."""
    try:
        calibration = noise_floor(read_run(run_dir).cases.to_dict("records"))
    except ResultsError:  # a damaged file is the reader's to report; the run must still be closed
        return {}
    return {"calibration": calibration} if calibration else {}


def run_suite(
    suite: SuiteSpec,
    project: ProjectConfig,
    results_root: Path | None = None,
    progress: Progress | None = None,
    suite_file_fingerprint: str | None = None,
) -> Path:
    """Runs every case of `suite` and returns the run directory.

    `suite_file_fingerprint` identifies the suite file as loaded (before --backbone/--attention filters),
    so that a resume can tell whether the file changed since.
    """
    device = resolve_device(suite.grid.device)
    settings = configure_process(project.threads, suite.timing)
    cases = expand_grid(suite, device.type)
    writer = RunWriter.create(
        results_root or project.results_dir,
        {
            "suite": suite.raw,
            "suite_fingerprint": suite.fingerprint,
            "suite_source": str(suite.source.resolve()) if suite.source else None,
            "suite_file_fingerprint": suite_file_fingerprint or suite.fingerprint,
            **environment(device, project.root),
            **settings,
            "isolate": suite.timing.isolate_on(device.type),
            "left_out": [asdict(item) for item in suite.left_out],
        },
    )
    return _execute(suite, cases, writer, device, progress, project.threads)


@dataclass(frozen=True)
class Resumed:
    """What a resume did: the cases it measured (none: the grid had a row for each), and what it found
    and repaired in the run's files."""

    path: Path
    measured: int
    warnings: tuple[str, ...] = ()


def resume_run(
    run_dir: Path, project: ProjectConfig, force: bool = False, progress: Progress | None = None
) -> Resumed:
    """Runs the cases of an interrupted run that have no row yet (or a bad one), in the same run directory.

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
        if current.fingerprint != run.meta.get("suite_file_fingerprint"):
            raise ConfigError(
                f"suite file {source} changed since run {run.run_id} started; "
                "use --force to finish the recorded grid anyway, or start a new run"
            )
    device = resolve_device(suite.grid.device)
    if device.type != run.meta.get("device", device.type).split(":")[0]:
        raise DeviceError(f"run {run.run_id} measured on {run.meta['device']}; it cannot be resumed on {device}")
    configure_process(project.threads, suite.timing)
    writer, run = RunWriter.reopen(Path(run_dir))
    try:
        done = {case_key(row) for _, row in run.cases.iterrows()}
        missing = [case for case in expand_grid(suite, device.type) if case_key(case.key) not in done]
        intact = not run.dropped and len(run.samples) == run.samples_on_disk
        if not missing and intact and run.meta.get("status") == "complete":
            writer.close()
            return Resumed(writer.path, 0)
        writer.repair(run)
        writer.update_meta(status="running", resumed=[*run.meta.get("resumed", []), utc_now()])
    except BaseException:
        writer.close()
        raise
    _execute(suite, missing, writer, device, progress, project.threads)
    return Resumed(writer.path, len(missing), tuple(run.warnings))
