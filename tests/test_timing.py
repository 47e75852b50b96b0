"""Timing logic with a fake clock, statistics on fixed samples, the new grid axes, and a tiny CPU run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attnbench.cli import main
from attnbench.config import (
    BUILT_IN_SUITES, CaseSpec, ProjectConfig, TimingSpec, attention_entry, expand_grid, load_project, parse_suite,
)
from attnbench.errors import ConfigError, DeviceError
from attnbench.measure import MeasureContext
from attnbench.measure import bandwidth
from attnbench.measure.bandwidth import roofline_columns
from attnbench.measure.stats import bootstrap_median_ci, summarize
from attnbench.measure.prepared import check_supported, prepare_case, prepare_step, unsupported
from attnbench.measure.timing import TIMERS, CpuTimer, Timer, adaptive_repeats, apply_flush_rule
from attnbench.results import read_run
from attnbench.runner import run_suite


class FakeClock:
    """Time moves only when a fake step says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStep:
    """Advances the clock by each of `durations` in turn (the last one repeats)."""

    def __init__(self, clock: FakeClock, durations: list[float]):
        self.clock, self.durations, self.calls = clock, durations, 0

    def __call__(self) -> None:
        self.clock.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def repeats(durations: list[float], **timing) -> tuple[list[float], FakeStep]:
    clock = FakeClock()
    step = FakeStep(clock, durations)
    timings = adaptive_repeats(step, TimingSpec(**timing), CpuTimer(torch.device("cpu"), clock), clock)
    assert timings.wall_ms == timings.latency_ms  # on the CPU the device time is the wall time
    return timings.latency_ms, step


# --- adaptive repeats -----------------------------------------------------------------------------


def test_repeats_stop_when_the_budget_is_spent() -> None:
    samples, _ = repeats([0.125], warmup=0, min_repeats=2, max_repeats=100, max_seconds=1.0)
    assert samples == [125.0] * 8


def test_min_repeats_are_run_even_past_the_budget() -> None:
    samples, _ = repeats([3.0], warmup=0, min_repeats=5, max_repeats=100, max_seconds=1.0)
    assert samples == [3000.0] * 5


def test_max_repeats_caps_a_fast_step() -> None:
    samples, _ = repeats([1e-6], warmup=0, min_repeats=2, max_repeats=7, max_seconds=10.0)
    assert len(samples) == 7


def test_warmup_is_neither_sampled_nor_charged_to_the_budget() -> None:
    samples, step = repeats(
        [50.0, 50.0, 0.25], warmup=2, warmup_seconds=1000.0, min_repeats=1, max_repeats=100, max_seconds=1.0
    )
    assert samples == [250.0] * 4
    assert step.calls == 2 + 4


def test_warmup_of_a_slow_step_ends_after_its_first_call() -> None:
    _, slow = repeats([0.5], warmup=3, warmup_seconds=0.25, min_repeats=2, max_repeats=2)
    _, fast = repeats([0.05], warmup=3, warmup_seconds=0.25, min_repeats=2, max_repeats=2)
    _, unwarmed = repeats([0.5], warmup=0, warmup_seconds=0.25, min_repeats=2, max_repeats=2)
    assert (slow.calls, fast.calls, unwarmed.calls) == (1 + 2, 3 + 2, 0 + 2)


def test_device_warmup_floor_applies_when_the_suite_asks_for_none() -> None:
    class NeedsOneWarmup(CpuTimer):
        min_warmup = 1

    clock = FakeClock()
    step = FakeStep(clock, [9.0, 0.5])
    timings = adaptive_repeats(
        step, TimingSpec(warmup=0, min_repeats=2, max_repeats=2), NeedsOneWarmup(torch.device("cpu"), clock), clock
    )
    assert timings.latency_ms == [500.0, 500.0]


def test_timers_are_looked_up_by_device_type() -> None:
    assert TIMERS["cpu"] is CpuTimer and set(TIMERS) == {"cpu", "cuda"}


class CachedTimer(Timer):
    """A timer with a 1000-byte cache that records whether it was asked to flush."""

    def cache_bytes(self) -> int:
        return 1000

    def enable_flush(self) -> None:
        self.flush = lambda: None


@pytest.mark.parametrize(
    ("rule", "working_set", "flushed"),
    [("auto", 500, True), ("auto", 1000, False), ("auto", 5000, False), ("on", 5000, True), ("off", 10, False)],
)
def test_l2_flush_rule(rule: str, working_set: int, flushed: bool) -> None:
    timer = CachedTimer(torch.device("cpu"), FakeClock())
    assert apply_flush_rule(timer, rule, working_set) is flushed
    assert (timer.flush is not None) is flushed


def test_no_flush_without_a_known_cache() -> None:
    assert apply_flush_rule(CpuTimer(torch.device("cpu"), FakeClock()), "on", 10) is False


# --- statistics -----------------------------------------------------------------------------------


def test_summary_of_fixed_samples() -> None:
    stats = summarize([float(v) for v in range(1, 11)])
    assert stats["latency_ms_median"] == 5.5
    assert stats["latency_ms_p10"] == pytest.approx(1.9)
    assert stats["latency_ms_p90"] == pytest.approx(9.1)
    assert stats["latency_ms_iqr"] == pytest.approx(7.75 - 3.25)
    assert stats["repeats"] == 10
    assert stats["noisy"] is True  # 4.5 / 5.5 > 10%
    assert stats["latency_ms_ci_low"] <= 5.5 <= stats["latency_ms_ci_high"]


def test_tight_samples_are_not_noisy_and_noise_threshold_is_ten_percent() -> None:
    assert summarize([100.0] * 9 + [101.0])["noisy"] is False
    # quartiles 95 and 105 around a median of 100: IQR/median = 10%, not above it
    assert summarize([90.0, 95.0, 100.0, 105.0, 110.0])["noisy"] is False
    assert summarize([89.0, 94.0, 100.0, 106.0, 111.0])["noisy"] is True


def test_bootstrap_interval_is_seeded_and_brackets_the_median() -> None:
    samples = list(np.random.default_rng(1).normal(10.0, 1.0, 200))
    first, second = bootstrap_median_ci(samples), bootstrap_median_ci(samples)
    assert first == second
    assert first[0] < np.median(samples) < first[1]
    assert first[1] - first[0] < 0.5  # 200 samples of sd 1 pin the median well inside +-0.25
    assert bootstrap_median_ci([4.0]) == (4.0, 4.0)


def test_summary_refuses_no_samples() -> None:
    with pytest.raises(ValueError):
        summarize([])


# --- grid axes and timing options -----------------------------------------------------------------


def _suite(project: ProjectConfig, grid: dict | None = None, timing: dict | None = None, metrics=("latency",)):
    base = {"backbones": ["resnet18"], "attention": ["none"], "batch_sizes": [1], "resolutions": [32], "device": "cpu"}
    return parse_suite(
        {"metrics": list(metrics), "grid": {**base, **(grid or {})}, "timing": timing or {}}, "t.toml", project
    )


def test_new_axes_default_to_false_and_eager_and_expand(project: ProjectConfig) -> None:
    assert [(c.channels_last, c.runtime) for c in expand_grid(_suite(project), "cpu")] == [(False, "eager")]
    suite = _suite(project, {"channels_last": [False, True], "runtimes": ["eager", "inductor"]})
    cases = expand_grid(suite, "cpu")
    assert suite.grid.case_count == len(cases) == 4
    assert len({case.case_id for case in cases}) == 4
    assert {(c.key["channels_last"], c.key["runtime"]) for c in cases} == {
        (False, "eager"), (False, "inductor"), (True, "eager"), (True, "inductor")
    }


@pytest.mark.parametrize(
    ("grid", "timing", "message"),
    [
        ({"compile": [True, True]}, {}, "compile: values must be distinct"),
        ({"runtimes": ["eager", "eager"]}, {}, "runtimes: values must be distinct"),
        ({"runtimes": ["onnxrt"]}, {}, "unknown runtime 'onnxrt': did you mean 'onnxruntime'"),
        ({"runtimes": ["tensorrt"]}, {}, "runtime 'tensorrt' runs on cuda, not device 'cpu'"),
        ({"runtimes": ["eager"], "compile": [False]}, {}, "give `runtimes` only"),
        ({"channels_last": ["yes"]}, {}, "channels_last: expected bool"),
        ({}, {"l2_flush": "sometimes"}, "l2_flush: 'sometimes' is not accepted; accepted: \"auto\", or true/false unquoted"),
        ({}, {"isolate": "auto"}, "isolate: expected bool"),
        ({}, {"compile_backend": "inducter"}, "did you mean 'inductor'"),
    ],
)
def test_bad_axes_and_options_are_one_line_errors(project, grid, timing, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _suite(project, grid, timing)


def test_timing_options_parse_and_isolation_defaults_by_device(project: ProjectConfig) -> None:
    timing = _suite(project, timing={"l2_flush": False, "cudnn_benchmark": False}).timing
    assert (timing.l2_flush, timing.cudnn_benchmark, timing.isolate) == ("off", False, None)
    assert timing.isolate_on("cuda") and not timing.isolate_on("cpu")
    assert _suite(project, timing={"isolate": True}).timing.isolate_on("cpu")


def test_unsupported_combinations_have_reasons(monkeypatch) -> None:
    def case(**changes) -> CaseSpec:
        fields = {"dtype": "float32", "runtime": "eager", **changes}
        return CaseSpec("resnet18", attention_entry("none"), 1, 32, mode="eval", device="cpu", **fields)

    timing = TimingSpec()
    assert unsupported(case(), timing) is None
    assert "float16" in unsupported(case(dtype="float16"), timing)
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert "C++ compiler" in unsupported(case(runtime="inductor"), timing)
    assert unsupported(case(runtime="inductor"), TimingSpec(compile_backend="eager")) is None
    with pytest.raises(DeviceError, match="float16"):
        check_supported(case(dtype="float16"), timing)


# --- steps ----------------------------------------------------------------------------------------


def _prepare(case: CaseSpec, module: nn.Module, inputs: tuple, optimize: bool = True, **timing):
    return prepare_step(case, module, inputs, torch.device("cpu"), TimingSpec(**timing), time.perf_counter, optimize)


def test_compiled_step_reports_compile_time_graphs_and_eager_does_not() -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    inputs = (torch.randn(1, 3, 8, 8),)
    spec = dict(backbone="resnet18", attention=attention_entry("none"), batch_size=1, resolution=8,
                dtype="float32", mode="eval", device="cpu")
    torch._dynamo.reset()
    eager = _prepare(CaseSpec(**spec), module, inputs)
    compiled = _prepare(CaseSpec(**spec, runtime="inductor"), module, inputs, compile_backend="eager")
    assert eager.runtime == {} and eager.graphs == 0
    assert compiled.runtime["runtime_build_s"] > 0 and compiled.graphs == 1 and compiled.graph_breaks == 0
    assert compiled.runtime["graph_nodes"] == 2 and compiled.runtime["max_abs_diff"] == 0
    compiled.step()
    assert eager.working_set_bytes == compiled.working_set_bytes == 4 * (4 * 3 * 9 + 4 + 3 * 64)
    torch._dynamo.reset()


def test_train_step_updates_weights_and_frees_gradients() -> None:
    module = nn.Linear(4, 2)
    before = module.weight.detach().clone()
    case = CaseSpec("resnet18", attention_entry("none"), 1, 8, "float32", "train", "cpu")
    prepared = _prepare(case, module, (torch.randn(3, 4),))
    assert prepared.optimizer is not None
    prepared.step()
    assert not torch.equal(before, module.weight)
    assert module.weight.grad is None and module.training


# --- roofline -------------------------------------------------------------------------------------


def test_roofline_columns_from_bytes_and_latency() -> None:
    assert roofline_columns({"bytes_eager": 2e9, "latency_ms_median": 1000.0}, 4.0) == {
        "achieved_bandwidth_gbs": 2.0, "bandwidth_fraction": 0.5
    }
    assert roofline_columns({"bytes_eager": None, "latency_ms_median": 1.0}, 4.0) == {}
    assert roofline_columns({"latency_ms_median": 1.0}, 4.0) == {}
    assert roofline_columns({"bytes_eager": 2e9, "latency_ms_median": 1000.0}, None) == {
        "achieved_bandwidth_gbs": 2.0
    }


# --- end to end on the CPU ------------------------------------------------------------------------


def test_tiny_cpu_run_end_to_end(project: ProjectConfig, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(bandwidth.COPY_BUFFER_BYTES, "cpu", 2**20)
    suite = _suite(
        project,
        {"attention": ["none", "se"], "channels_last": [False, True]},
        {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "max_seconds": 0.01},
        metrics=("latency", "memory", "module_latency"),
    )
    run = read_run(run_suite(suite, project, tmp_path / "results"))
    meta = run.meta
    assert meta["status"] == "complete" and meta["threads"] == 1 and meta["isolate"] is False
    assert meta["cudnn_benchmark"] is True and meta["copy_bandwidth_gbs"] > 0
    assert meta["allocator"]["configured"] is (meta["allocator"]["libc"].startswith("glibc"))
    ok = run.cases
    assert len(ok) == 4 and (ok["status"] == "ok").all()
    assert (ok["repeats"] == 3).all() and (ok["peak_mem_mib"] > 0).all()
    assert (~ok["l2_flush"].astype(bool)).all() and ok["runtime_build_s"].isna().all()
    assert (ok["throughput_ips"] == 1 / (ok["latency_ms_median"] / 1e3)).all()
    assert ok["achieved_bandwidth_gbs"].isna().all()  # no bytes_eager without the complexity figures
    module_ms = ok.set_index(["attention", "channels_last"])["module_latency_ms_median"]
    assert module_ms[("none", False)] == 0 and module_ms[("se", False)] > 0 and module_ms[("se", True)] > 0
    samples = run.samples[run.samples["case_id"].isin(ok["case_id"])]
    assert len(samples) == 12 and (samples["wall_ms"] == samples["latency_ms"]).all()


def test_cuda_suite_without_cuda_is_one_line_and_exit_2(capsys, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    suite = tmp_path / "gpu.toml"
    suite.write_text((BUILT_IN_SUITES / "gpu-latency.toml").read_text().replace('"mobilenet_v2"', '"resnet18"'))
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "CUDA is not available" in err
    assert err.startswith("attnbench: error: suite 'gpu-latency' runs on device 'cuda'")
    assert not list(tmp_path.glob("2*"))  # no run directory: nothing ran on the CPU instead


# --- the host allocator ---------------------------------------------------------------------------

FAULTS = """
import resource, sys, torch
from attnbench.measure.allocator import configure_allocator
if sys.argv[1] == "configured":
    assert configure_allocator()["configured"]
def call():
    torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)  # 64 MiB: above glibc's largest mmap threshold
for _ in range(3):  # warm-up, as before any timed repeat
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    call()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc page-fault behaviour")
def test_configured_allocator_stops_large_tensors_from_faulting_on_every_call() -> None:
    def faults(mode: str) -> int:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], cwd=root, capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    default, configured = faults("default"), faults("configured")
    assert default >= 20  # at least one fault per call: the buffer is fresh memory every time
    # Configured, the heap may still grow a few times while free chunks coalesce, then stops faulting.
    assert configured * 4 < default


# --- attention modules alone ----------------------------------------------------------------------


class TickingClock:
    """Advances 1 ms on every read, so each timed call measures exactly 1 ms."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-3
        return self.now


def test_module_latency_sums_every_instance_and_captures_its_input() -> None:
    from attnbench.backbones import build_model
    from attnbench.measure.module_latency import TensorSpec, capture_site_inputs, module_latency

    built = build_model("resnet18", "se")
    case = CaseSpec("resnet18", attention_entry("se"), 2, 32, "float32", "eval", "cpu")
    timing = TimingSpec(warmup=0, min_repeats=2, max_repeats=2)
    prepared = prepare_case(case, built, torch.device("cpu"), timing, time.perf_counter)
    specs = capture_site_inputs(prepared, timing)
    assert len(specs) == len(built.sites) == 8
    assert specs[0] == (TensorSpec((2, 64, 8, 8), torch.float32, False),)
    context = MeasureContext(timing, torch.device("cpu"), TickingClock())
    # 8 instances in 4 distinct shapes: the sum is over instances, 1 ms each
    assert module_latency(prepared, context).columns == {"module_latency_ms_median": pytest.approx(8.0)}


# --- shipped suites -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["cpu-latency", "gpu-latency", "gpu-train", "compile"])
def test_shipped_timing_suites_parse_to_the_intended_grids(name: str) -> None:
    from attnbench.backbones import BACKBONES
    from attnbench.config import load_suite, read_toml

    missing = [b for b in read_toml(BUILT_IN_SUITES / f"{name}.toml")["grid"]["backbones"] if b not in BACKBONES]
    if missing:
        pytest.skip(f"backbone {missing[0]} is not registered on this branch yet")
    suite = load_suite(name, load_project(REPO / "attnbench.toml"))
    grid = suite.grid
    expected = {
        "cpu-latency": ("cpu", False, {1, 8}, ("eager",)),
        "gpu-latency": ("cuda", True, {1, 32, 128, 256}, ("eager",)),
        "gpu-train": ("cuda", True, {32, 128}, ("eager",)),
        "compile": ("auto", None, {1, 32}, ("eager", "inductor")),
    }[name]
    assert (grid.device, suite.timing.isolate, set(grid.batch_sizes), grid.runtimes) == expected
    assert grid.resolutions == (224,)
