"""The CUDA path's logic that a CPU can check: throttling flags, reduced-precision modes, TF32 records,
the duration estimate and the GPU check's plan."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.backbones import build_model
from attnbench.cli import main
from attnbench.config import (
    BUILT_IN_SUITES,
    TimingSpec,
    attention_entry,
    expand_grid,
    load_suite,
    make_case,
    parse_suite,
)
from attnbench.estimate import estimate_seconds
from attnbench.measure.complexity import Precision, count_complexity
from attnbench.measure.gpu_state import GpuState, driver_facts, read_state, state_columns
from attnbench.measure.prepared import prepare_case
from attnbench.report.header import environment_lines, warning_lines
from attnbench.report.view import RunView
from attnbench.results import CASE_COLUMNS, Run, read_run
from attnbench.runner import run_suite

from tests.conftest import write

REPO = Path(__file__).resolve().parents[1]


def state(clock: int, *slowdowns: str) -> GpuState:
    return GpuState(sm_clock_mhz=clock, mem_clock_mhz=2619, temperature_c=60, power_w=300.0, slowdowns=slowdowns)


def test_throttling_is_flagged_by_a_clock_drop_or_a_reported_slowdown():
    steady = state_columns(state(1980), state(1965))
    assert steady["throttled"] is False and steady["throttle_reasons"] == ""
    dropped = state_columns(state(1980), state(1500))
    assert dropped["throttled"] is True and dropped["throttle_reasons"] == "SM clock dropped"
    capped = state_columns(state(1980), state(1980, "power cap"))
    assert capped["throttled"] is True and capped["throttle_reasons"] == "power cap"
    assert state_columns(None, state(1980)) == {}
    assert set(steady) <= set(CASE_COLUMNS)


def test_without_a_gpu_there_is_no_state_and_no_driver():
    assert read_state(torch.device("cpu")) is None and driver_facts(torch.device("cpu")) == {}


def case(dtype: str):
    return make_case("resnet18", attention_entry("se"), batch_size=1, resolution=32, dtype=dtype, mode="eval",
                     device="cpu")


@pytest.mark.parametrize(("mode", "stored"), [("convert", torch.bfloat16), ("autocast", torch.float32)])
def test_low_precision_converts_the_model_or_autocasts_it(mode: str, stored: torch.dtype):
    timing = TimingSpec(low_precision=mode)
    prepared = prepare_case(case("bfloat16"), build_model("resnet18", "se"), torch.device("cpu"), timing,
                            time.perf_counter)
    assert next(prepared.model.parameters()).dtype == stored and prepared.inputs[0].dtype == stored
    prepared.step()
    full = prepare_case(case("float32"), prepared.built, torch.device("cpu"), timing, time.perf_counter)
    assert next(full.model.parameters()).dtype == torch.float32  # the shared model converted back


def test_bytes_count_what_runs_in_each_precision_mode():
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)).eval()
    full = count_complexity(model, [], (8, 16, 16)).at_one["bytes_eager"]
    autocast = count_complexity(model, [], (8, 16, 16), Precision(torch.bfloat16, autocasts=True)).at_one
    converted = count_complexity(model.to(torch.bfloat16), [], (8, 16, 16), Precision(torch.bfloat16)).at_one
    assert converted["bytes_eager"] * 2 == full  # every tensor at 2 bytes instead of 4
    # Autocast reads the float32 input and weight, writes and reads their bfloat16 casts, writes bf16 output.
    weight, image = 8 * 8 * 9, 8 * 16 * 16
    assert autocast["bytes_eager"] == (4 + 2 + 2) * (weight + image) + 2 * image
    assert autocast["flops"] == converted["flops"]


def test_tf32_and_low_precision_are_recorded(project, tmp_path):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    grid = {"backbones": ["resnet18"], "attention": ["none"], "batch_sizes": [1], "resolutions": [32], "device": "cpu"}
    timing = {"warmup": 1, "min_repeats": 3, "max_seconds": 0.01}
    try:
        default = read_run(run_suite(parse_suite({"metrics": ["latency"], "grid": grid, "timing": timing}, "a.toml",
                                                 project), project, tmp_path))
        assert default.meta["tf32"]["set_by_suite"] is False and default.meta["low_precision"] == "autocast"
        timing = {**timing, "tf32": True, "low_precision": "convert"}
        set_run = read_run(run_suite(parse_suite({"metrics": ["latency"], "grid": grid, "timing": timing}, "b.toml",
                                                 project), project, tmp_path))
        assert set_run.meta["tf32"] == {
            "matmul": True, "cudnn": True, "float32_matmul_precision": set_run.meta["tf32"]["float32_matmul_precision"],
            "set_by_suite": True,
        }
        assert set_run.meta["low_precision"] == "convert"
        text = "\n".join(environment_lines(RunView(set_run)))
        assert "float16/bfloat16 run as: convert" in text and "TF32" not in text  # no GPU settings on a CPU run
        on_gpu = Run(set_run.path, {**set_run.meta, "device": "cuda:0"}, set_run.cases, set_run.samples)
        assert "TF32 matmuls: on" in "\n".join(environment_lines(RunView(on_gpu)))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_throttled_case_is_a_warning_in_the_report():
    cases = pd.DataFrame([{"case_id": "a", "backbone": "resnet50", "attention": "se", "batch_size": 64,
                           "status": "ok", "noisy": False, "throttled": True, "throttle_reasons": "power cap",
                           "resolution": 224, "dtype": "float32", "mode": "eval", "device": "cuda"}])
    lines = warning_lines(RunView(Run(Path("."), {"status": "complete"}, cases.reindex(columns=CASE_COLUMNS),
                                      pd.DataFrame())))
    assert any("1 case(s) were timed while the GPU throttled" in line and "(power cap)" in line for line in lines)


def test_the_estimate_grows_with_the_budget_and_counts_worker_start_ups(project):
    suite = load_suite(str(BUILT_IN_SUITES / "gpu-check.toml"), project)
    cases = expand_grid(suite, "cuda")
    estimate = estimate_seconds(suite, "cuda", cases)
    assert estimate_seconds(replace(suite, timing=replace(suite.timing, max_seconds=2.0)), "cuda", cases) > estimate
    assert estimate_seconds(replace(suite, timing=replace(suite.timing, isolate=False)), "cuda", cases) < estimate
    assert estimate < 8 * 60  # the GPU check fits its slot


def test_gpu_check_plans_on_a_cpu_and_refuses_to_run_without_cuda(capsys):
    assert main(["--config", str(REPO / "attnbench.toml"), "gpu-check", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan: pytest -m gpu") and "suite gpu-check (20 cases" in out
    if not torch.cuda.is_available():
        assert main(["--config", str(REPO / "attnbench.toml"), "gpu-check", "--out", "/tmp/never"]) == 2
        assert "gpu-check needs a CUDA GPU" in capsys.readouterr().err


def test_gpu_check_refuses_an_out_it_cannot_write_before_the_tests(tmp_path, monkeypatch, capsys):
    import attnbench.cli.gpu_check as gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "check", lambda *args: pytest.fail("the check ran"))
    blocking = write(tmp_path / "a-file", "")
    assert main(["--config", str(REPO / "attnbench.toml"), "gpu-check", "--out", str(blocking)]) == 2
    assert f"--out {blocking} is a file; accepted: a folder" in capsys.readouterr().err


@pytest.mark.parametrize("tests_exit, exit_code", [(0, 0), (1, 1)])
def test_gpu_check_runs_tests_suite_and_report_into_one_folder(project_dir, project, tmp_path, monkeypatch, capsys,
                                                                tests_exit, exit_code):
    """The check's whole flow after the CUDA test, on a CPU suite with the GPU suite's metrics and
    cuda_graphs (their CUDA columns stay empty there), the pytest run stubbed."""
    import subprocess

    from attnbench.cli import gpu_check

    stub = subprocess.CompletedProcess([], tests_exit, "5 passed in 9.1s\n" if tests_exit == 0 else "1 failed\n", "")
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda *args, **kwargs: stub)
    text = (project_dir / "suites" / "tiny.toml").read_text().replace(
        'metrics = ["complexity", "latency"]', 'metrics = ["complexity", "latency", "memory", "module_latency"]'
    ) + "cuda_graphs = true\nprecision = 1.0\n"
    suite = load_suite(str(write(tmp_path / "check.toml", text)), project)
    out = tmp_path / "check"
    out.mkdir()
    assert gpu_check.check(suite, project, out) == exit_code
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == f"gpu tests: {stub.stdout.strip()} (exit {tests_exit})"
    assert "TF32 matmul" in lines[1] and ": complete, 2/2 ok, copy bandwidth" in lines[2]
    assert "eager_ms" in lines[3] and "launch_ms" in lines[3] and [line.split()[0] for line in lines[4:6]] == ["none", "se"]
    assert lines[-1].startswith("took ") and f"report: {out / 'report.md'}" in lines[-1]
    assert (out / "pytest-gpu.log").read_text() == stub.stdout
    assert (out / "report.md").exists() and read_run(next((out / "results").iterdir())).meta["status"] == "complete"
