"""Merging run directories (the shards of one grid, run anywhere) into one run directory.

Shards merge when they measured the same suite, in the same environment (the fields a comparison warns
about), written in the same results schema, and no case twice; `force` merges anyway and records each
difference as a warning in meta.json, which reports show first. The merged run is complete when every
shard is and together they cover the grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.errors import ResultsError
from attnbench.results.reader import Run, is_run_dir, read_run
from attnbench.results.schema import CASE_COLUMNS, CASES_FILE, SAMPLES_FILE, SITES_FILE, case_key
from attnbench.results.writer import RunWriter, atomic_write_text, utc_now

PER_RUN = (
    "run_id", "status", "start_time", "end_time", "resumed", "shard", "executor", "worker_pins", "warnings",
    "migrated_from", "calibration",
)
"""meta.json keys that describe one run, not what the runs share: each shard's go into `merged_from`."""


def _env_fields() -> tuple[str, ...]:
    from attnbench.gate import ENV_FIELDS

    return ENV_FIELDS


def _schema(run: Run) -> int:
    return run.meta.get("migrated_from", run.meta["schema_version"])


def differences(runs: list[Run]) -> list[str]:
    """Why these runs should not be one run: another suite, environment or schema, a case twice."""
    found = []
    checks = [("suite", lambda run: run.suite_name), ("suite fingerprint", lambda run: run.meta.get("suite_fingerprint")),
              ("results schema", _schema)]
    checks += [(field, lambda run, field=field: run.meta.get(field)) for field in _env_fields()]
    for what, value in checks:
        values = {run.run_id: value(run) for run in runs}
        if len({str(v) for v in values.values()}) > 1:
            found.append(f"different {what}: " + ", ".join(f"{run_id} {v}" for run_id, v in values.items()))
    seen: dict[tuple, str] = {}
    twice = []
    for run in runs:
        for _, row in run.cases.iterrows():
            key = case_key(row)
            if key in seen:
                twice.append(f"{row['case_id']} in {seen[key]} and {run.run_id}")
            seen.setdefault(key, run.run_id)
    if twice:
        more = f" and {len(twice) - 3} more" if len(twice) > 3 else ""
        found.append(f"{len(twice)} case(s) in more than one run: {'; '.join(twice[:3])}{more}")
    return found


def merge_runs(paths: list[Path], out_root: Path, force: bool = False) -> Path:
    """Writes the runs at `paths` as one new run directory in `out_root` and returns it. Cases keep the first
    run's row where `force` lets a case in twice."""
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise ResultsError(f"merge: {missing[0]} does not exist; accepted: two or more run directories")
    if len(paths) < 2:
        root = [path for path in paths if Path(path).is_dir() and not is_run_dir(Path(path))]
        hint = f"; {root[0]} is a folder of runs: pass its shards' run directories ({root[0]}/*)" if root else ""
        raise ResultsError(f"merge needs at least two run directories{hint}")
    runs = [read_run(path) for path in paths]
    if len({run.run_id for run in runs}) < len(runs):
        raise ResultsError("merge: the same run is given twice")
    problems = differences(runs)
    if problems and not force:
        raise ResultsError(f"cannot merge: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                           + "; --force merges anyway and records the differences")
    owner: dict[str, int] = {}  # the run whose row of a case is kept: the first that has it
    for index, run in enumerate(runs):
        for case_id in run.cases["case_id"]:
            owner.setdefault(case_id, index)
    cases = _concat([_owned(run.cases, owner, index) for index, run in enumerate(runs)])
    samples = _concat([_owned(run.samples, owner, index) for index, run in enumerate(runs)])
    sites = _concat([_owned(run.sites, owner, index) for index, run in enumerate(runs)])
    kept = set(cases["case_id"])

    order = runs[0].meta.get("case_order")
    covered = not order or set(order) <= kept
    complete = covered and all(run.meta.get("status") == "complete" for run in runs)
    meta = {key: value for key, value in runs[0].meta.items() if key not in PER_RUN}
    hosts = sorted({str(run.meta.get("host")) for run in runs})
    meta.update(
        host=", ".join(hosts),
        merged_from=[_origin(run) for run in runs],
        merged_time=utc_now(),
        **({"warnings": [f"merged with --force: {problem}" for problem in problems]} if problems else {}),
    )
    writer = RunWriter.create(Path(out_root), meta)
    path = writer.path
    atomic_write_text(path / CASES_FILE, cases.reindex(columns=_columns(cases)).to_csv(index=False, lineterminator="\n"))
    atomic_write_text(path / SAMPLES_FILE, samples.to_csv(index=False, lineterminator="\n"))
    if not sites.empty:
        atomic_write_text(path / SITES_FILE, sites.to_csv(index=False, lineterminator="\n"))
    writer.update_meta(
        status="complete" if complete else "incomplete",
        start_time=min(str(run.meta.get("start_time", "")) for run in runs),
        end_time=max(str(run.meta.get("end_time", "")) for run in runs),
    )
    from attnbench.calibration import noise_floor

    calibration = noise_floor(read_run(path).cases.to_dict("records"))
    if calibration:
        writer.update_meta(calibration=calibration)
    return path


def _owned(frame: pd.DataFrame, owner: dict[str, int], index: int) -> pd.DataFrame:
    return frame[frame["case_id"].map(owner) == index]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    filled = [frame for frame in frames if not frame.empty]
    return pd.concat(filled, ignore_index=True) if filled else frames[0].iloc[0:0]


def _columns(cases: pd.DataFrame) -> list[str]:
    return [*CASE_COLUMNS, *(column for column in cases.columns if column not in CASE_COLUMNS)]


def _origin(run: Run) -> dict[str, Any]:
    """What the merged run keeps of each shard."""
    meta = run.meta
    keys = ("run_id", "shard", "status", "host", "device_name", "threads", "executor", "start_time", "end_time",
            "copy_bandwidth_gbs")
    return {"path": str(run.path), **{key: meta[key] for key in keys if key in meta}, "cases": len(run.cases)}
