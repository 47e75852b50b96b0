"""The profile metric and command on a tiny ResNet-18 on the CPU: attribution, counts, trace, errors."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEvent

from attnbench.backbones import build_model
from attnbench.cli import main
from attnbench.config import CaseSpec, TimingSpec, attention_entry, parse_option
from attnbench.errors import OptionError
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.prepared import PreparedCase, prepare_case
from attnbench.measure.profile import AUTOGRAD_ENGINE, StepProfile, event_rows, profile_prepared, profile_step
from attnbench.modules import get_attention
from attnbench.report.markdown import SECTIONS
from attnbench.report.view import RunView
from attnbench.results import CASE_COLUMNS, Run

CPU = torch.device("cpu")


def tiny_case(key: str, mode: str = "eval", batch: int = 1, device: str = "cpu") -> CaseSpec:
    return CaseSpec("resnet18", attention_entry(key), batch, 32, "float32", mode, device)


def prepared(key: str, mode: str = "eval", batch: int = 1, device: torch.device = CPU) -> PreparedCase:
    case = tiny_case(key, mode, batch, device.type)
    return prepare_case(case, build_model("resnet18", key), device, TimingSpec(), time.perf_counter)


def profiled(key: str, mode: str = "eval", batch: int = 1) -> tuple[StepProfile, list]:
    case = prepared(key, mode, batch)
    return profile_prepared(case, warmup=1, steps=2), case.sites


@pytest.fixture(scope="module")
def se() -> tuple[StepProfile, list]:
    torch.manual_seed(0)
    return profiled("se")


@pytest.fixture(scope="module")
def plain() -> StepProfile:
    return profiled("none")[0]


def test_attention_share_is_a_fraction_for_se_and_zero_without_attention(se, plain):
    result, sites = se
    assert 0 < result.attention_share() <= 1
    assert plain.attention_share() == 0
    assert plain.attention.empty
    assert set(result.attention["site"]) == {site.path for site in sites}
    assert len(result.step_ms) == 2 and all(ms > 0 for ms in result.step_ms)


def test_se_adds_its_own_operators_once_per_block(se, plain):
    result, sites = se
    module = get_attention("se").build(64).eval()
    inputs = torch.randn(1, 64, 8, 8)

    def step() -> None:
        with torch.inference_mode():
            module(inputs)

    alone = profile_step(step, CPU, warmup=1, steps=2)
    assert alone.operators_per_step >= 5  # mean, two linears, relu, sigmoid, mul: a real count, not zero
    assert result.operators_per_step - plain.operators_per_step == alone.operators_per_step * len(sites)
    assert result.launches_per_step == result.operators_per_step  # on the CPU, launches are operators
    assert result.kernels_per_step is None


def test_attention_tables_add_up(se):
    result, sites = se
    attention_ms = result.attention["self_cpu_us"].sum() / result.steps / 1e3
    stages = result.by_stage()
    assert stages["instances"].sum() == len(sites)
    assert stages["ms"].sum() == pytest.approx(attention_ms)
    assert stages["pct"].sum() == pytest.approx(result.attention_share() * 100)
    inside = result.top_ops(count=1000, attention_only=True)
    assert inside["pct"].sum() == pytest.approx(100)
    assert not inside.index.str.startswith(AUTOGRAD_ENGINE).any()
    names = [part.rsplit(" ", 1)[0] for part in result.attention_top_ops().split(", ")]
    assert names == [name.removeprefix("aten::") for name in inside.index[:3]]


def test_labels_are_removed_after_profiling(se):
    _, sites = se
    for site in sites:
        assert not site.module._forward_pre_hooks and not site.module._forward_hooks


def test_train_mode_attributes_the_backward_of_attention():
    result, _ = profiled("se", mode="train", batch=2)
    attention = result.attention
    assert attention["name"].str.startswith(AUTOGRAD_ENGINE).any()
    assert 0 < result.attention_share() <= 1


def test_trace_is_chrome_json_with_attention_ranges(tmp_path: Path):
    trace = tmp_path / "trace.json"
    profile_prepared(prepared("se"), warmup=1, steps=1, trace=trace)
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(event.get("name", "").startswith("attention:layer1.0") for event in events)


def test_metric_columns(se, plain):
    context = MeasureContext(timing=TimingSpec(warmup=1), device=CPU)
    columns = METRICS.get("profile")(prepared("se"), context).columns
    assert set(columns) <= set(CASE_COLUMNS)
    assert 0 < columns["attention_time_share"] <= 1
    assert columns["kernel_count"] == se[0].operators_per_step
    assert len(columns["attention_top_ops"].split(", ")) == 3
    baseline = METRICS.get("profile")(prepared("none"), context).columns
    assert baseline == {"attention_time_share": 0.0, "kernel_count": plain.operators_per_step, "attention_top_ops": None}


def test_an_added_step_time_within_the_steps_spread_is_left_out_and_said(se, plain):
    from attnbench.report.profile_section import NOISY_ADDED_TIME, STEP_MS, profile_tables, summary

    module, base = replace(se[0], step_ms=[10.0, 12.0]), replace(plain, step_ms=[11.0, 11.5])
    added = summary(module, base, "resnet18").set_index("model")
    assert math.isnan(added.loc["added", STEP_MS]) and added.loc["added", "operators / step"] > 0
    assert profile_tables(module, base, "resnet18")[0][0].endswith(NOISY_ADDED_TIME)
    clear = replace(se[0], step_ms=[20.0, 20.5])
    assert summary(clear, replace(plain, step_ms=[10.0, 10.2]), "resnet18").set_index("model").loc[
        "added", STEP_MS] == pytest.approx(10.15)
    assert NOISY_ADDED_TIME not in profile_tables(clear, replace(plain, step_ms=[10.0, 10.2]), "resnet18")[0][0]


def test_report_section_shows_share_and_added_launches():
    cases = pd.DataFrame(
        [
            {"backbone": "resnet18", "attention": attention, "batch_size": 1, "resolution": 32, "dtype": dtype,
             "mode": "eval", "device": "cpu", "status": "ok", "latency_ms_median": latency,
             "throughput_ips": 1000 / latency,
             "attention_time_share": share, "kernel_count": launches, "attention_top_ops": top}
            for dtype in ("float32", "bfloat16")
            for attention, latency, share, launches, top in (
                ("none", 10.0, 0.0, 69.0, None), ("se", 12.0, 0.125, 133.0, "mul 40%, mean 30%, mm 10%"),
            )
        ]
    ).reindex(columns=CASE_COLUMNS)
    body = SECTIONS.get("Where the time goes")(RunView(Run(Path("."), {}, cases, pd.DataFrame())))
    # dtype varies in the run, so it is a column (batch, resolution and mode do not); counts print as counts
    assert "| backbone | attention | dtype | latency vs none (%) |" in body
    assert "| resnet18 | se | float32 | 20.0 | 12.5 | 133 | 64 | mul 40%, mean 30%, mm 10% |" in body
    assert "| resnet18 | se | bfloat16 | 20.0 | 12.5 | 133 | 64 |" in body
    empty = cases.assign(attention_time_share=float("nan"))
    assert SECTIONS.get("Where the time goes")(RunView(Run(Path("."), {}, empty, pd.DataFrame()))) is None


def test_parse_option_reads_toml_values():
    assert parse_option("reduction=8") == ("reduction", 8)
    assert parse_option("bias=true") == ("bias", True)
    assert parse_option("mode=fast") == ("mode", "fast")
    with pytest.raises(OptionError, match="KEY=VALUE"):
        parse_option("reduction")


def test_profile_command_prints_tables_and_writes_markdown_and_trace(tmp_path: Path, capsys):
    out, trace = tmp_path / "profile.md", tmp_path / "trace.json"
    argv = ["profile", "--backbone", "resnet18", "--attention", "se", "--option", "reduction=8",
            "--resolution", "32", "--device", "cpu", "--steps", "1", "--out", str(out), "--trace", str(trace)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for title in ("per step", "Top operators by self CPU time", "Attention time by stage", "Inside the attention"):
        assert title in printed and title in out.read_text()
    assert "resnet18 alone" in printed and "added per instance (8)" in printed
    assert "| aten::" in out.read_text()
    json.loads(trace.read_text())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backbone", "resnet5", "--attention", "se"], "unknown backbone 'resnet5': did you mean"),
        (["--backbone", "resnet18", "--attention", "sex"], "unknown attention 'sex'"),
        (["--backbone", "resnet18", "--attention", "se", "--option", "reductoin=8"], "has no option 'reductoin'"),
        (["--backbone", "resnet18", "--attention", "se", "--resolution", "8"], "--resolution 8 is too small"),
        (["--backbone", "resnet18", "--attention", "se", "--dtype", "float16"], "float16 autocast"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(extra: list[str], message: str, capsys):
    assert main(["profile", "--device", "cpu", "--resolution", "32", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnbench: error: ") and message in err
    assert "\n" not in err


def test_out_of_memory_and_one_file_for_two_outputs_are_one_line(tmp_path: Path, monkeypatch, capsys):
    import attnbench.measure.profile as profile_module

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried")

    monkeypatch.setattr(profile_module, "profile_against_baseline", out_of_memory)
    base = ["profile", "--device", "cpu", "--backbone", "resnet18", "--attention", "se"]
    assert main([*base, "--batch", "100000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnbench: error: out of memory profiling batch 100000 at 224 px on cpu")
    assert "accepted: a smaller --batch or --resolution" in err and "\n" not in err
    same = tmp_path / "both"
    assert main([*base, "--trace", str(same), "--out", str(same)]) == 2
    assert "--trace and --out name the same file" in capsys.readouterr().err


def cuda_event(name: str, start: float, end: float, parent: FunctionEvent | None = None, **kwargs) -> FunctionEvent:
    kwargs = {"activity_type": "cpu_op", "use_device": "cuda", **kwargs}
    event = FunctionEvent(id=kwargs.pop("id", 0), name=name, thread=1, start_us=start, end_us=end, **kwargs)
    if parent is not None:
        event.set_cpu_parent(parent)
        parent.append_cpu_child(event)
    return event


def test_device_activity_counts_once_on_its_launching_operator():
    """What torch.profiler hands back on a GPU, built by hand: kernels appear both on their operator and as
    events of their own; a memset is linked to no operator; a runtime call is not an operator."""
    step = cuda_event("ProfilerStep*", 0, 100, activity_type="user_annotation", is_user_annotation=True)
    label = cuda_event("attention:layer1.0", 10, 50, step, activity_type="user_annotation", is_user_annotation=True)
    mul = cuda_event("aten::mul", 20, 40, label, id=7)
    conv = cuda_event("aten::conv2d", 60, 90, step, id=8)
    sync = cuda_event("cudaDeviceSynchronize", 92, 99, step, activity_type="cuda_runtime")
    mul.append_kernel("mul_kernel", 0, 7.0)
    conv.append_kernel("conv_kernel", 0, 30.0)
    device = [
        cuda_event("mul_kernel", 20, 27, device_type=DeviceType.CUDA, linked_correlation_id=7, activity_type="kernel"),
        cuda_event("conv_kernel", 60, 90, device_type=DeviceType.CUDA, linked_correlation_id=8, activity_type="kernel"),
        cuda_event("Memset", 95, 98, device_type=DeviceType.CUDA, activity_type="gpu_memset"),
    ]
    rows = event_rows([step, label, mul, conv, sync, *device])
    result = StepProfile("se", "cuda", 1, rows, [100.0], {"layer1.0": "layer1"})
    assert result.kernels_per_step == result.launches_per_step == 3
    assert result.operators_per_step == 2
    assert rows["self_device_us"].sum() == 40
    assert result.attention_share() == pytest.approx(7 / 40)
    assert result.attention_top_ops() == "mul 100%"
    assert result.by_stage().loc["layer1", "ms"] == pytest.approx(0.007)


@pytest.mark.gpu
def test_cuda_counts_kernels_and_shares_kernel_time():
    result = profile_prepared(prepared("se", device=torch.device("cuda")), warmup=2, steps=2)
    assert result.kernels_per_step > 0 and result.launches_per_step == result.kernels_per_step
    assert result.time_column == "self_device_us"
    assert 0 < result.attention_share() <= 1
    assert 0 < result.attention_share("self_cpu_us") <= 1
