"""The CUDA path on a GPU: each test checks a property that a wrong timer, flush, graph or setting breaks.

Skipped without CUDA (tests/conftest.py); `attnbench gpu-check` runs them first on a GPU machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attnbench.backbones import build_model
from attnbench.config import ProjectConfig, TimingSpec, attention_entry, make_case, parse_suite
from attnbench.measure.bandwidth import copy_bandwidth_gbs
from attnbench.measure.graphs import graph_columns
from attnbench.measure.prepared import prepare_case
from attnbench.measure.timing import CudaTimer, adaptive_repeats
from attnbench.results import read_run
from attnbench.runner import run_suite
from attnbench.seeds import random_input

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
TIMING = TimingSpec(warmup=3, min_repeats=20, max_repeats=50, max_seconds=0.5)


def median_ms(step, flush: bool = False) -> float:
    timer = CudaTimer(CUDA, time.perf_counter)
    if flush:
        timer.enable_flush()
    return float(np.median(adaptive_repeats(step, TIMING, timer, time.perf_counter).latency_ms))


def test_event_time_is_within_the_end_to_end_time_of_the_call():
    a = torch.randn(4096, 4096, device=CUDA)
    timer = CudaTimer(CUDA, time.perf_counter)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start = time.perf_counter()
    device_ms, host_ms = timer(lambda: a @ a)
    end_to_end_ms = (time.perf_counter() - start) * 1e3
    assert 0 < device_ms <= end_to_end_ms and 0 < host_ms <= end_to_end_ms
    assert host_ms < device_ms  # one big matmul: issued in microseconds, run in milliseconds


def test_a_flushed_small_case_is_slower_than_an_unflushed_one():
    x = torch.randn(256 * 1024, device=CUDA)  # 1 MiB: stays in L2 between unflushed repeats
    assert median_ms(lambda: x.mul(2.0), flush=True) > median_ms(lambda: x.mul(2.0))


def test_graph_replay_is_not_slower_than_eager():
    case = make_case("resnet18", attention_entry("se"), batch_size=1, resolution=64, dtype="float32", mode="eval",
                     device="cuda")
    prepared = prepare_case(case, build_model("resnet18", "se"), CUDA, TIMING, time.perf_counter)
    eager = median_ms(prepared.step)
    columns = graph_columns(prepared, TIMING, time.perf_counter, eager, flush=False)
    assert "graph_error" not in columns, columns
    assert columns["graph_ms_median"] <= 1.05 * eager
    assert columns["launch_overhead_ms"] == pytest.approx(eager - columns["graph_ms_median"])


def test_a_cuda_input_is_the_same_in_every_draw_and_on_the_device():
    first = random_input((2, 3, 16, 16), CUDA, torch.float16)
    assert first.device.type == "cuda" and first.dtype == torch.float16
    assert torch.equal(first, random_input((2, 3, 16, 16), CUDA, torch.float16))


def test_copy_bandwidth_is_plausible_for_a_gpu():
    measured = copy_bandwidth_gbs(CUDA, time.perf_counter, buffer_bytes=512 * 2**20)["copy_bandwidth_gbs"]
    assert 50 < measured < 20_000  # GB/s: from a laptop GPU's GDDR to an HBM3e part, read + write


def test_every_suite_setting_reaches_meta_json_and_the_rows(project: ProjectConfig, tmp_path: Path):
    suite = parse_suite(
        {
            "metrics": ["latency", "memory"],
            "grid": {"backbones": ["resnet18"], "attention": ["none", "se"], "batch_sizes": [2], "resolutions": [64],
                     "dtypes": ["bfloat16"], "device": "cuda"},
            "timing": {"warmup": 2, "min_repeats": 5, "max_seconds": 0.2, "tf32": False, "low_precision": "convert",
                       "cuda_graphs": True, "l2_flush": True, "cudnn_benchmark": False, "isolate": True},
        },
        "settings.toml", project,
    )
    run = read_run(run_suite(suite, project, tmp_path))
    meta = run.meta
    assert meta["tf32"] == {"matmul": False, "cudnn": False, "float32_matmul_precision": meta["tf32"]["float32_matmul_precision"],
                            "set_by_suite": True}
    assert meta["low_precision"] == "convert" and meta["cudnn_benchmark"] is False and meta["isolate"] is True
    assert meta["device_name"] and meta["cudnn"] and meta["copy_bandwidth_gbs"] > 0
    assert meta["suite"]["timing"]["cuda_graphs"] is True
    cases = run.cases
    assert (cases["status"] == "ok").all() and cases["l2_flush"].all()
    assert (cases["graph_ms_median"] > 0).all() and cases["graph_error"].isna().all()
    assert (cases["peak_mem_mib"] > 0).all()
    se = cases[cases["attention"] == "se"].iloc[0]
    assert se["latency_overhead_ci_low_pct"] <= se["latency_overhead_pct"] <= se["latency_overhead_ci_high_pct"]


def test_the_runner_of_isolated_groups_holds_no_cuda_context(project: ProjectConfig, tmp_path: Path):
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from attnbench.config import load_project, parse_suite\n"
        "from attnbench.runner import run_suite\n"
        "project = load_project(sys.argv[1])\n"
        "grid = {'backbones': ['resnet18'], 'attention': ['none', 'se'], 'batch_sizes': [1], 'resolutions': [32],"
        " 'device': 'cuda'}\n"
        "suite = parse_suite({'metrics': ['latency'], 'grid': grid, 'timing': {'min_repeats': 3, 'max_seconds': 0.1,"
        " 'isolate': True}}, 't.toml', project)\n"
        "run_suite(suite, project, __import__('pathlib').Path(sys.argv[2]))\n"
        "print(torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(project.source), str(tmp_path)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "False"
