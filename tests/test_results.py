from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.errors import ResultsError
from attnbench.results import (
    CASE_COLUMNS,
    SCHEMA_VERSION,
    RunWriter,
    find_runs,
    new_run_id,
    read_run,
)


def make_run(root: Path) -> RunWriter:
    writer = RunWriter.create(root, {"suite": {"name": "t"}})
    writer.append_case(
        {"case_id": "a1", "backbone": "resnet18", "attention": "se", "batch_size": 1, "status": "ok",
         "error": "", "latency_ms_median": 2.0},
        [1.0, 2.0, 3.0],
    )
    writer.append_case({"case_id": "b2", "backbone": "resnet18", "attention": "cbam", "status": "error",
                        "error": 'RuntimeError: bad, "quoted"\nsecond line'})
    writer.finish()
    return writer


def test_round_trip(tmp_path: Path):
    writer = make_run(tmp_path)
    run = read_run(writer.path)
    assert run.meta["schema_version"] == SCHEMA_VERSION
    assert run.meta["status"] == "complete" and run.meta["end_time"]
    assert list(run.cases.columns[: len(CASE_COLUMNS)]) == CASE_COLUMNS
    assert run.cases["case_id"].tolist() == ["a1", "b2"]
    assert run.cases.loc[1, "error"] == 'RuntimeError: bad, "quoted"\nsecond line'
    assert run.samples_of("a1") == [1.0, 2.0, 3.0]
    assert run.samples_of("b2") == []
    assert pd_isna(run.cases.loc[1, "latency_ms_median"])


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_rows_are_on_disk_before_finish(tmp_path: Path):
    writer = RunWriter.create(tmp_path, {"suite": {"name": "t"}})
    writer.append_case({"case_id": "x", "status": "ok"}, [1.5])
    run = read_run(writer.path)
    assert run.meta["status"] == "running"
    assert run.cases["case_id"].tolist() == ["x"]


def test_run_ids_sort_by_time_and_never_collide(tmp_path: Path):
    ids = [new_run_id() for _ in range(200)]
    assert len(set(ids)) == len(ids)
    assert all(len(i.split("-")[0]) == len("20261121T054454") for i in ids)
    first, second = RunWriter.create(tmp_path, {}), RunWriter.create(tmp_path, {})
    assert first.path != second.path
    assert find_runs(tmp_path) == sorted([first.path, second.path])


def test_newer_schema_is_refused(tmp_path: Path):
    writer = make_run(tmp_path)
    meta = json.loads((writer.path / "meta.json").read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (writer.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ResultsError, match="newer than this attnbench reads"):
        read_run(writer.path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "meta.json").write_text("{broken"), "corrupted JSON"),
        (lambda p: (p / "cases.csv").unlink(), "cases.csv: missing"),
        (lambda p: (p / "cases.csv").write_text(""), "empty"),
        (lambda p: (p / "cases.csv").write_text("case_id,foo\n1,2\n"), "missing columns"),
        (lambda p: (p / "meta.json").unlink(), "not a run directory"),
    ],
)
def test_damaged_run_directories(tmp_path: Path, damage, message):
    writer = make_run(tmp_path)
    damage(writer.path)
    with pytest.raises(ResultsError, match=message):
        read_run(writer.path)


def test_results_path_that_is_a_file(tmp_path: Path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ResultsError, match="is a file"):
        RunWriter.create(target, {})


def test_find_runs_errors(tmp_path: Path):
    with pytest.raises(ResultsError, match="does not exist"):
        find_runs(tmp_path / "nope")
    assert find_runs(tmp_path) == []
