"""Each comparison group in a fresh process: a worker that dies becomes an error row and the run goes on."""

from __future__ import annotations

import signal

import pytest

import torch

from attnbench.config import attention_entry, expand_grid, parse_suite
from attnbench.config import CaseSpec
from attnbench.measure import bandwidth
from attnbench.modules import ATTENTION
from attnbench.results import read_run
from attnbench.executors.isolated import Isolated, crash_message, defining_modules
from attnbench.runner import run_suite
from attnbench.schedule import Group

TINY_TIMING = {"warmup": 0, "min_repeats": 2, "max_repeats": 2, "max_seconds": 0.01}


@pytest.fixture
def crashing():
    import crashing_attention

    crashing_attention.register()
    yield crashing_attention
    for key in crashing_attention.CRASHING:
        del ATTENTION._entries[key]  # keep "*" in other tests free of these modules


def test_crash_message_names_the_signal_or_the_exit_code() -> None:
    assert "killed by SIGSEGV" in crash_message(-signal.SIGSEGV)
    assert "exited with code 3" in crash_message(3)


def test_defining_modules_names_modules_outside_attnbench(crashing) -> None:
    outside = CaseSpec("resnet18", attention_entry("crash_exit"), 1, 32, "float32", "eval", "cpu")
    inside = CaseSpec("resnet18", attention_entry("se"), 1, 32, "float32", "eval", "cpu")
    assert defining_modules(outside) == [crashing.__name__]
    assert defining_modules(inside) == []


def test_segfault_in_a_worker_becomes_an_error_row_and_its_group_runs_again(crashing, project) -> None:
    suite = parse_suite(
        {"metrics": ["latency"], "grid": {"backbones": ["resnet18"], "attention": ["none", "crash_segv"],
                                          "batch_sizes": [1], "resolutions": [32], "device": "cpu"},
         "timing": TINY_TIMING},
        "segv.toml", project,
    )
    cases = expand_grid(suite, "cpu")
    outcome = Isolated(suite, torch.device("cpu"), threads=1).run(Group(tuple(cases)), facts=False)
    plain, crashed = outcome.results
    assert crashed.row["status"] == "error" and "SIGSEGV" in crashed.row["error"]
    assert crashed.row["case_id"] == cases[1].case_id and crashed.samples is None
    assert plain.row["status"] == "ok" and len(plain.samples) == 2  # timed again in a worker of its own


def test_isolated_run_records_the_crash_and_goes_on(crashing, project, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(bandwidth.COPY_BUFFER_BYTES, "cpu", 2**20)
    suite = parse_suite(
        {
            "metrics": ["latency"],
            "grid": {
                "backbones": ["resnet18"], "attention": ["crash_exit", "none"], "batch_sizes": [1],
                "resolutions": [32], "device": "cpu",
            },
            "timing": {**TINY_TIMING, "isolate": True},
        },
        "isolated.toml",
        project,
    )
    run = read_run(run_suite(suite, project, tmp_path / "results"))
    assert run.meta["status"] == "complete" and run.meta["isolate"] is True
    crashed, ok = (run.cases.set_index("attention").loc[label] for label in ("crash_exit", "none"))
    assert crashed["status"] == "error"
    assert f"exited with code {crashing.EXIT_CODE}" in crashed["error"]
    assert ok["status"] == "ok" and ok["repeats"] == 2
    samples = run.samples[run.samples["case_id"] == ok["case_id"]]
    assert len(samples) == 2 and samples["wall_ms"].notna().all()
    assert run.samples[run.samples["case_id"] == crashed["case_id"]].empty
