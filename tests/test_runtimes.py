"""Runtimes as a grid axis: registry and skip reasons, ONNX Runtime and OpenVINO for real on tiny shapes,
the check against eager's output, the older `compile` axis and schema-2 runs, the "Cost by runtime" report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from attnbench.config import (
    CaseSpec, TimingSpec, attention_entry, expand_grid, filter_suite, load_project, load_suite, make_case, parse_suite,
)
from attnbench.errors import ConfigError, DeviceError
from attnbench.estimate import estimate_seconds
from attnbench.executors import base as executor_base
from attnbench.measure.prepared import check_supported, prepare_step, unsupported
from attnbench.report import write_report
from attnbench.report.runtime_section import cost_by_runtime, runtimes_table
from attnbench.report.view import RunView
from attnbench.results import case_key, key_path, read_run
from attnbench.runner import resume_run, run_suite
from attnbench.runtimes import RUNTIMES, TOLERANCE, Built, OutputMismatch, compare
from attnbench.runtimes.axis import compile_era_fingerprint

TINY = {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "max_seconds": 0.01}
REPO = Path(__file__).resolve().parents[1]


def suite_of(project, attention: list, runtimes: list, metrics=("latency",), timing: dict | None = None, **grid):
    base = {"backbones": ["resnet18"], "attention": attention, "batch_sizes": [1], "resolutions": [32],
            "device": "cpu", "runtimes": runtimes}
    return parse_suite({"metrics": list(metrics), "grid": {**base, **grid}, "timing": {**TINY, **(timing or {})}},
                       "t.toml", project)


def case_in(runtime: str, **changes) -> CaseSpec:
    point = {"batch_size": 1, "resolution": 32, "dtype": "float32", "mode": "eval", "device": "cpu", **changes}
    return make_case("resnet18", attention_entry("none"), runtime=runtime, **point)


class Gated(nn.Module):
    """conv-BN-ReLU and an SE-like gate: small enough to export in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y * torch.sigmoid(self.fc(y.mean((2, 3))))[:, :, None, None]


# --- the registry and what each runtime can run ---------------------------------------------------


def test_runtimes_are_registered_in_order_with_their_extras():
    assert RUNTIMES.names() == ["eager", "inductor", "onnxruntime", "openvino", "tensorrt"]
    assert [RUNTIMES.get(n).extra for n in RUNTIMES.names()] == [None, None, "deploy", "deploy", None]
    assert RUNTIMES.get("onnxruntime").missing() == [] and RUNTIMES.get("openvino").missing() == []


@pytest.mark.parametrize(
    ("runtime", "changes", "reason"),
    [
        ("onnxruntime", {"mode": "train"}, "runs inference only"),
        ("openvino", {"channels_last": True}, "channels_last is a PyTorch memory format"),
        ("onnxruntime", {"dtype": "bfloat16"}, "on cpu runs float32, not bfloat16"),
        ("tensorrt", {}, "runtime 'tensorrt'"),
        ("eager", {"mode": "train", "channels_last": True}, None),
        ("inductor", {"mode": "train"}, None),
    ],
)
def test_what_a_runtime_cannot_run_is_skipped_with_a_reason(runtime, changes, reason):
    found = unsupported(case_in(runtime, **changes), TimingSpec(compile_backend="eager"))
    assert found is None if reason is None else reason in found
    if reason:
        with pytest.raises(DeviceError):
            check_supported(case_in(runtime, **changes), TimingSpec())


def test_a_runtime_outside_the_extras_is_skipped_naming_how_to_install(monkeypatch):
    spec = RUNTIMES.get("tensorrt")
    monkeypatch.setitem(RUNTIMES._entries, "tensorrt", dataclasses.replace(spec, requires=("no_such_module_x",)))
    reason = unsupported(case_in("tensorrt", device="cuda"), TimingSpec())
    assert reason == ("runtime 'tensorrt' needs no_such_module_x, which is not installed: pip install tensorrt "
                      "(NVIDIA's wheels, on a CUDA machine)")


def test_asking_for_a_runtime_that_is_not_installed_is_one_line_naming_the_extra(project, monkeypatch):
    spec = RUNTIMES.get("onnxruntime")
    monkeypatch.setitem(RUNTIMES._entries, "onnxruntime", dataclasses.replace(spec, requires=("onnx", "no_ort_x")))
    with pytest.raises(ConfigError) as error:
        suite_of(project, ["none"], ["eager", "onnxruntime"])
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith("runtimes: runtime 'onnxruntime' needs no_ort_x, not installed: pip install -e '.[deploy]'")


def test_the_older_compile_axis_reads_as_eager_and_inductor(project):
    base = {"backbones": ["resnet18"], "attention": ["none"], "batch_sizes": [1], "resolutions": [32], "device": "cpu"}
    suite = parse_suite({"grid": {**base, "compile": [False, True]}}, "t.toml", project)
    assert suite.grid.runtimes == ("eager", "inductor")
    assert suite.raw["grid"]["runtimes"] == ["eager", "inductor"] and "compile" not in suite.raw["grid"]
    assert [c.runtime for c in expand_grid(suite, "cpu")] == ["eager", "inductor"]


def test_runtime_narrowing_and_the_key_path(project):
    suite = suite_of(project, ["none", "se"], ["eager", "onnxruntime", "openvino"])
    narrowed = filter_suite(suite, runtimes=["openvino"])
    assert narrowed.grid.runtimes == ("openvino",) and narrowed.raw["grid"]["runtimes"] == ["openvino"]
    with pytest.raises(ConfigError, match="--runtime 'tensorrt' is not in suite"):
        filter_suite(suite, runtimes=["tensorrt"])
    keys = [c.key for c in expand_grid(suite, "cpu")]
    assert [key_path(k) for k in keys[:3]] == [
        "resnet18/none/1/32/float32/eval/cpu", "resnet18/none/1/32/float32/eval/cpu/onnxruntime",
        "resnet18/none/1/32/float32/eval/cpu/openvino",
    ]
    assert len({c.setting for c in expand_grid(suite, "cpu")}) == 3  # each runtime is its own comparison group


def test_the_estimate_counts_each_runtimes_build(project):
    eager = suite_of(project, ["none", "se"], ["eager"])
    deployed = suite_of(project, ["none", "se"], ["eager", "onnxruntime", "openvino"])
    extra = estimate_seconds(deployed, "cpu", expand_grid(deployed, "cpu")) - estimate_seconds(
        eager, "cpu", expand_grid(eager, "cpu"))
    builds = 2 * (RUNTIMES.get("onnxruntime").build_estimate_s["cpu"] + RUNTIMES.get("openvino").build_estimate_s["cpu"])
    assert extra == pytest.approx(builds + 4 * (1.0 + TINY["max_seconds"]))


def test_list_runtimes_and_suites_that_need_a_missing_extra(project_dir, monkeypatch, capsys):
    from attnbench.cli import main

    monkeypatch.chdir(project_dir)
    (project_dir / "suites" / "ort.toml").write_text(
        '[grid]\nbackbones = ["resnet18"]\nattention = ["none"]\nbatch_sizes = [1]\nresolutions = [32]\n'
        'runtimes = ["onnxruntime"]\n')
    assert main(["list", "runtimes"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in RUNTIMES.names())
    spec = RUNTIMES.get("onnxruntime")
    monkeypatch.setitem(RUNTIMES._entries, "onnxruntime", dataclasses.replace(spec, requires=("no_ort_x",)))
    assert main(["list", "suites"]) == 0
    listed = " ".join(capsys.readouterr().out.split())
    assert "tiny" in listed and "cannot be loaded" in listed
    assert main(["run", "--suite", "ort"]) == 2
    assert "pip install -e '.[deploy]'" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("name", ["deploy-cpu", "deploy-gpu"])
def test_shipped_deploy_suites(name):
    suite = load_suite(name, load_project(REPO / "attnbench.toml"))
    grid = suite.grid
    assert grid.backbones == ("resnet18", "resnet50", "mobilenet_v2") and grid.batch_sizes == (1,)
    assert [e.label for e in grid.attention] == ["none", "se", "eca", "cbam", "coord"] and grid.resolutions == (224,)
    expected = {
        "deploy-cpu": ("cpu", ("float32",), ("eager", "inductor", "onnxruntime", "openvino")),
        "deploy-gpu": ("cuda", ("float32", "bfloat16"), ("eager", "inductor", "onnxruntime", "tensorrt")),
    }[name]
    assert (grid.device, grid.dtypes, grid.runtimes) == expected


# --- building and checking ------------------------------------------------------------------------


def _prepare(runtime: str, module: nn.Module, **changes):
    case = case_in(runtime, resolution=8, **changes)
    inputs = (torch.randn(1, 3, 8, 8),)
    return prepare_step(case, module, inputs, torch.device("cpu"), TimingSpec(), time.perf_counter, True)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_deployment_runtime_builds_counts_its_graphs_and_agrees_with_eager(runtime):
    torch.manual_seed(0)
    prepared = _prepare(runtime, Gated())
    columns = prepared.runtime
    assert columns["runtime_build_s"] > 0 and columns["max_rel_diff"] < TOLERANCE["float32"]
    # conv (BN folded), relu, mean, gemm, sigmoid, unsqueezes, mul: the export holds the gate's steps
    assert columns["graph_nodes"] >= 6 and columns["optimized_nodes"] >= 3
    threads = {"onnxruntime": "intra_op_num_threads=", "openvino": "INFERENCE_NUM_THREADS="}[runtime]
    assert f"{threads}{torch.get_num_threads()}" in columns["runtime_settings"]
    prepared.step()
    assert prepared.graphs == 0 and prepared.optimizer is None


def test_openvino_is_told_float32_so_that_bfloat16_cpus_do_not_downcast():
    settings = _prepare("openvino", Gated()).runtime["runtime_settings"]
    assert "INFERENCE_PRECISION_HINT=f32" in settings and "PERFORMANCE_HINT=LATENCY" in settings


def test_the_inductor_runtime_counts_dynamo_graph_operations():
    torch._dynamo.reset()
    case = case_in("inductor", resolution=8)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    prepared = prepare_step(case, module, (torch.randn(1, 3, 8, 8),), torch.device("cpu"),
                            TimingSpec(compile_backend="eager"), time.perf_counter, True)
    assert prepared.runtime["graph_nodes"] == 2 and "optimized_nodes" not in prepared.runtime
    assert prepared.runtime["runtime_settings"].startswith("backend=eager; dynamic=False")
    torch._dynamo.reset()


@pytest.mark.gpu
@pytest.mark.parametrize(("runtime", "dtype"), [("onnxruntime", "float32"), ("onnxruntime", "float16"),
                                                ("tensorrt", "float32"), ("tensorrt", "bfloat16"),
                                                ("inductor", "bfloat16")])
def test_cuda_runtimes_build_agree_and_run_on_the_current_stream(runtime, dtype):
    case = case_in(runtime, resolution=8, device="cuda", dtype=dtype)
    timing = TimingSpec(low_precision="convert")
    reason = unsupported(case, timing)
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    module = Gated().cuda().to(getattr(torch, dtype))
    inputs = (torch.randn(1, 3, 8, 8, device="cuda", dtype=getattr(torch, dtype)),)
    prepared = prepare_step(case, module, inputs, torch.device("cuda"), timing, time.perf_counter, True)
    assert prepared.runtime["max_rel_diff"] <= TOLERANCE[dtype if dtype != "float32" else "tf32"]
    prepared.step()
    torch.cuda.synchronize()


def test_differences_are_relative_to_the_outputs_scale_with_a_tolerance_per_precision():
    reference = torch.tensor([[10.0, -2.0, 0.0]])
    cpu = torch.device("cpu")
    assert compare(reference, reference + 0.005, "r", "float32", cpu) == pytest.approx(
        {"max_abs_diff": 0.005, "max_rel_diff": 5e-4}, rel=1e-4)
    with pytest.raises(OutputMismatch, match=r"max \|diff\| 0.02 is 0.002 of the output's largest magnitude 10, "
                                             r"over the float32 tolerance 0.001") as error:
        compare(reference, reference + 0.02, "r", "float32", cpu)
    assert error.value.columns == pytest.approx({"max_abs_diff": 0.02, "max_rel_diff": 0.002}, rel=1e-4)
    assert compare(reference, reference + 0.02, "r", "bfloat16", cpu)["max_rel_diff"] == pytest.approx(0.002, rel=1e-4)
    with pytest.raises(OutputMismatch):
        compare(reference, reference * float("nan"), "r", "bfloat16", cpu)
    with pytest.raises(OutputMismatch, match="returned shape"):
        compare(reference, reference[0], "r", "float32", cpu)


def _wrong(model, inputs, case, timing) -> Built:
    return Built(lambda *args: model(*args) + 1.0, facts={"graph_nodes": 1})


def test_a_runtime_that_disagrees_gives_an_error_row_with_the_difference_and_no_latency(project, tmp_path, monkeypatch):
    spec = dataclasses.replace(RUNTIMES.get("eager"), name="wrong", build=_wrong, modes=("eval",))
    monkeypatch.setitem(RUNTIMES._entries, "wrong", spec)
    monkeypatch.setattr(executor_base, "copy_bandwidth_gbs", lambda device, clock: {"copy_bandwidth_gbs": 1.0})
    run = read_run(run_suite(suite_of(project, ["none", "se"], ["eager", "wrong"]), project, tmp_path))
    wrong = run.cases[run.cases["runtime"] == "wrong"]
    assert (wrong["status"] == "error").all() and wrong["latency_ms_median"].isna().all()
    assert wrong["error"].str.contains("runtime 'wrong' disagrees with eager: max \\|diff\\|").all()
    assert (wrong["max_rel_diff"] > TOLERANCE["float32"]).all() and (wrong["graph_nodes"] == 1).all()
    assert (run.cases.loc[run.cases["runtime"] == "eager", "status"] == "ok").all()
    assert set(run.samples["case_id"]) == set(run.cases.loc[run.cases["runtime"] == "eager", "case_id"])


# --- end to end: eager, ONNX Runtime and OpenVINO -------------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny run of none and se in eager, ONNX Runtime and OpenVINO (four real exports)."""
    folder = tmp_path_factory.mktemp("deployed")
    (folder / "attnbench.toml").write_text('results_dir = "results"\nthreads = 1\n')
    project = load_project(folder / "attnbench.toml")
    suite = suite_of(project, ["none", "se"], ["eager", "onnxruntime", "openvino"], ("latency", "memory", "profile"),
                     {"min_repeats": 4, "max_repeats": 4})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executor_base, "copy_bandwidth_gbs", lambda device, clock: {"copy_bandwidth_gbs": 1.0})
        return folder, run_suite(suite, project, folder / "results")


@pytest.mark.slow
def test_every_runtime_is_timed_and_paired_with_its_own_none(deployed):
    cases = read_run(deployed[1]).cases
    assert (cases["status"] == "ok").all() and len(cases) == 6
    assert cases["runtime"].tolist() == ["eager", "eager", "onnxruntime", "onnxruntime", "openvino", "openvino"]
    se = cases[cases["attention"] == "se"].set_index("runtime")
    assert se["latency_overhead_pct"].notna().all()
    deployed_rows = cases[cases["runtime"] != "eager"]
    assert (deployed_rows["max_rel_diff"] < TOLERANCE["float32"]).all()
    assert deployed_rows["peak_mem_mib"].isna().all()  # their allocators are not PyTorch's
    assert deployed_rows[["kernel_count", "attention_time_share"]].isna().all().all()  # one opaque call
    assert cases.loc[cases["runtime"] == "eager", "peak_mem_mib"].notna().all()
    assert cases.loc[cases["runtime"] == "eager", ["runtime_build_s", "graph_nodes"]].isna().all().all()
    nodes = cases.set_index(["runtime", "attention"])["graph_nodes"]
    # SE adds its squeeze, two linear layers, sigmoid and multiply to each of resnet18's 8 blocks
    assert nodes[("onnxruntime", "se")] - nodes[("onnxruntime", "none")] >= 8 * 5
    assert nodes[("onnxruntime", "se")] == nodes[("openvino", "se")]  # one exporter, one export per case


@pytest.mark.slow
def test_the_report_shows_cost_by_runtime_with_a_figure(deployed):
    folder, run_dir = deployed
    view = RunView(read_run(run_dir))
    section = cost_by_runtime(view)
    assert "#### resnet18 at 32 px, batch 1, float32, eval, cpu" in section
    assert "| attention | eager | onnxruntime | openvino |" in section
    assert "| none (absolute) | " in section and " ms |" in section
    assert "Graph nodes, exported → optimized" in section and "Largest difference from eager's output" in section
    table = runtimes_table(view.cases)
    assert set(table["runtime"]) == {"eager", "onnxruntime", "openvino"} and "optimized_nodes" in table
    text = write_report(run_dir, folder / "report.md").read_text()
    assert "### Cost by runtime" in text
    figures = list((folder / "report-figures").glob("*-runtimes-resnet18-at-32-px-batch-1-float32-eval-cpu.png"))
    assert len(figures) == 1 and figures[0].stat().st_size > 0


def test_no_cost_by_runtime_section_for_a_single_runtime():
    cases = pd.DataFrame({"case_id": ["a"], "runtime": ["eager"], "latency_ms_median": [1.0]})
    assert runtimes_table(cases).empty


# --- runs written before runtimes -----------------------------------------------------------------


def _as_schema_2(run_dir: Path, compiled: bool) -> None:
    """Rewrites a run as schema 2 wrote it: `compile` in the key and the suite, `compile_s`."""
    cases = pd.read_csv(run_dir / "cases.csv", dtype=str, keep_default_na=False)
    cases.insert(cases.columns.get_loc("runtime"), "compile", str(compiled))
    cases["compile_s"] = "12.5" if compiled else ""
    cases.drop(columns=["runtime", "runtime_build_s"]).to_csv(run_dir / "cases.csv", index=False)
    meta = json.loads((run_dir / "meta.json").read_text())
    grid = meta["suite"]["grid"]
    grid["compile"] = [grid.pop("runtimes") == ["inductor"]]
    old = hashlib.sha256(json.dumps(meta["suite"], sort_keys=True).encode()).hexdigest()[:16]
    meta.update(schema_version=2, status="interrupted", suite_file_fingerprint=old)
    (run_dir / "meta.json").write_text(json.dumps(meta))


def test_schema_2_runs_read_with_compile_as_runtime(project, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_base, "copy_bandwidth_gbs", lambda device, clock: {"copy_bandwidth_gbs": 1.0})
    run_dir = run_suite(suite_of(project, ["none"], ["eager"]), project, tmp_path)
    _as_schema_2(run_dir, compiled=True)
    run = read_run(run_dir)
    assert run.meta["migrated_from"] == 2 and "compile" not in run.cases and "compile_s" not in run.cases
    assert run.cases["runtime"].tolist() == ["inductor"] and run.cases["runtime_build_s"].tolist() == [12.5]
    assert case_key(run.cases.iloc[0]) == case_key(case_in("inductor").key)


def test_resuming_a_schema_2_run_from_its_unchanged_suite_file(project, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_base, "copy_bandwidth_gbs", lambda device, clock: {"copy_bandwidth_gbs": 1.0})
    suite_file = tmp_path / "old.toml"
    suite_file.write_text('name = "old"\nmetrics = ["latency"]\n[grid]\nbackbones = ["resnet18"]\n'
                          'attention = ["none", "se"]\nbatch_sizes = [1]\nresolutions = [32]\ncompile = [false]\n'
                          'device = "cpu"\n[timing]\nwarmup = 1\nmin_repeats = 3\nmax_repeats = 3\nmax_seconds = 0.01\n')
    suite = load_suite(str(suite_file), project)
    run_dir = run_suite(suite, project, tmp_path / "results")
    lines = (run_dir / "cases.csv").read_text().splitlines()
    (run_dir / "cases.csv").write_text("\n".join(lines[:2]) + "\n")  # stopped after `none`
    _as_schema_2(run_dir, compiled=False)
    assert json.loads((run_dir / "meta.json").read_text())["suite_file_fingerprint"] == compile_era_fingerprint(suite)
    resume_run(run_dir, project)
    resumed = read_run(run_dir)
    assert resumed.meta["schema_version"] == 3 and resumed.cases["attention"].tolist() == ["none", "se"]
    assert resumed.cases["runtime"].tolist() == ["eager", "eager"] and "compile" not in resumed.cases
