"""The Python API: each entry point on tiny shapes, against the code the commands run, and the README's
"From Python" example executed as it stands."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import attnbench
import attnbench.measurement as measurement_module
from attnbench import gate
from attnbench.backbones import build_model as build_backbone
from attnbench.cli import main
from attnbench.measure.stats import paired_overhead, summarize
from attnbench.modules import ATTENTION, get_attention
from attnbench.report.compare import comparison_records

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "results"
OLD_RUN, NEW_RUN = DATA / "20260104T100000-0f0f0f", DATA / "20260105T100000-a1b2c3"
TINY = {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "max_seconds": 0.05}


def tiny_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def tiny_suite(metrics: list[str], attention: list | None = None) -> dict:
    return {
        "metrics": metrics,
        "grid": {"backbones": ["resnet18"], "attention": attention or ["none", "se"], "batch_sizes": [2],
                 "resolutions": [32], "device": "cpu"},
        "timing": TINY,
    }


# --- the package ----------------------------------------------------------------------------------


def test_import_attnbench_does_not_import_torch():
    code = "import sys, attnbench; assert 'torch' not in sys.modules; print(len(attnbench.__all__))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(done.stdout) == len(attnbench.__all__)


def test_every_exported_name_resolves_and_submodules_still_import():
    for name in attnbench.__all__:
        assert getattr(attnbench, name) is not None
    assert set(attnbench.__all__) <= set(dir(attnbench))
    # The form that breaks when a function shadows a subpackage: a package attribute lookup, then the module's.
    import attnbench.measure.timing as timing  # noqa: PLR0402

    assert callable(timing.paired_rounds) and callable(attnbench.latency)
    with pytest.raises(AttributeError):
        attnbench.no_such_name  # noqa: B018
    assert issubclass(attnbench.OptionError, attnbench.AttnbenchError)


def test_the_package_is_typed():
    assert (ROOT / "attnbench" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()


# --- modules and models ---------------------------------------------------------------------------


def test_create_attention_builds_the_registered_module():
    module = attnbench.create_attention("se", 64, reduction=8)
    assert isinstance(module, get_attention("se").cls)
    assert sum(p.numel() for p in module.parameters()) == get_attention("se").param_count(64, reduction=8)
    assert module(torch.randn(1, 64, 4, 4)).shape == (1, 64, 4, 4)
    with pytest.raises(attnbench.UnknownNameError, match="unknown attention 'sse': did you mean .*'se'"):
        attnbench.create_attention("sse", 64)
    with pytest.raises(attnbench.OptionError, match="no option 'reduce'"):
        attnbench.create_attention("se", 64, reduce=8)


def test_list_attention_is_a_frame_of_the_registry():
    frame = attnbench.list_attention()
    assert frame["key"].tolist() == ATTENTION.names()
    assert {"paper", "placement", "options", "formula"} <= set(frame.columns)
    se = frame.set_index("key").loc["se"]
    assert se["options"] == {"reduction": 16, "bias": False} and se["placement"] == "block"


def test_build_model_returns_the_suite_model_with_its_sites():
    model = attnbench.build_model("resnet18", "se", reduction=8)
    info = model.attnbench
    assert isinstance(model, nn.Module) and isinstance(info, attnbench.ModelInfo)
    assert (info.backbone, info.attention.label, info.placement) == ("resnet18", "se(reduction=8)", "block")
    assert len(info.sites) == 8 and all(model.get_submodule(s.path) is s.module for s in info.sites)
    same = build_backbone("resnet18", "se", {"reduction": 8}).model
    assert model.state_dict().keys() == same.state_dict().keys()
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    twin = copy.deepcopy(model)  # the sites follow the copy's modules
    assert all(twin.get_submodule(s.path) is s.module for s in twin.attnbench.sites)
    plain = attnbench.build_model("resnet18")
    assert plain.attnbench.sites == () and plain.attnbench.placement == ""


def test_build_model_refuses_what_a_suite_refuses():
    with pytest.raises(attnbench.UnknownNameError, match="did you mean 'resnet18'"):
        attnbench.build_model("resnet1")
    with pytest.raises(attnbench.ConfigError, match="takes no options"):
        attnbench.build_model("resnet18", "none", reduction=8)
    with pytest.raises(attnbench.OptionError, match="BasicBlock"):
        attnbench.build_model("resnet18", "sk")


# --- counting -------------------------------------------------------------------------------------


def test_complexity_is_the_complexity_metric_of_a_run(tmp_path, capsys):
    run = attnbench.run_suite(tiny_suite(["complexity"]), tmp_path)
    for key in ("none", "se"):
        row = run.cases[run.cases["attention"] == key].iloc[0]
        counts = attnbench.complexity(attnbench.build_model("resnet18", key), (2, 3, 32, 32))
        for column, value in counts.items():
            if column in ("sites", "uncounted_ops"):
                continue
            recorded = row[column]
            if value is None:
                assert pd.isna(recorded), column
            else:
                assert value == recorded or value == pytest.approx(recorded), column
        assert counts["uncounted_ops"] == {}
    sites = run.sites[run.sites["attention"] == "se"].drop(columns="case_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(counts["sites"], sites, check_dtype=False)
    assert capsys.readouterr() == ("", "")  # nothing printed


def test_complexity_of_any_module_has_no_attention_split():
    counts = attnbench.complexity(tiny_model(), (2, 3, 8, 8))
    assert counts["macs"] == 2 * 4 * 8 * 8 * 3 * 9 and counts["params"] == 4 * 27 + 4 + 8
    assert counts["params_attention"] is None and counts["flops_attention"] is None and counts["formula_ok"] is None
    assert counts["sites"].empty
    with pytest.raises(attnbench.UsageError, match="not a shape"):
        attnbench.complexity(tiny_model(), (3, 0, 8))
    with pytest.raises(attnbench.UsageError, match="dtype"):
        attnbench.complexity(tiny_model(), (1, 3, 8, 8), dtype="float64")


def test_complexity_checks_a_backbones_own_attention():
    model = attnbench.build_model("mobilenet_v3_small", "native")
    counts = attnbench.complexity(model, (1, 3, 32, 32))
    assert counts["formula_ok"] and len(counts["sites"]) == 9 and counts["params_attention"] > 0


# --- timing ---------------------------------------------------------------------------------------


def test_a_measurement_derives_its_statistics_from_its_samples():
    base = attnbench.Measurement("base", "cpu", "float32", "eval", 1, (2.0,) * 5, (2.0,) * 5, tuple(range(5)), False)
    samples = (2.0, 4.0, 6.0, 8.0, 40.0)
    measured = attnbench.Measurement(
        "model", "cpu", "float32", "eval", 1, samples, samples, tuple(range(5)), False, precision=1.0, baseline=base
    )
    assert measured.stats == {**summarize(samples), "wall_ms_median": 6.0}
    assert measured.median_ms == 6.0 and measured.iqr_ms == 4.0 and measured.noisy
    assert measured.ci_ms == (measured.stats["latency_ms_ci_low"], measured.stats["latency_ms_ci_high"])
    assert measured.overhead == paired_overhead(pd.Series(samples).to_numpy() / 2.0)
    assert measured.overhead.pct == 200.0 and measured.precision_met is False
    frame = measured.to_frame()
    assert frame["role"].tolist() == ["model", "baseline"] and frame["latency_overhead_pct"].iloc[0] == 200.0
    assert measured.samples.columns.tolist() == ["repeat", "round", "latency_ms", "wall_ms"]
    text = repr(measured)
    assert "median 6 ms" in text and "overhead +200%" in text and "WARNING: model is noisy" in text


def test_latency_times_a_model_against_its_baseline_in_paired_rounds(monkeypatch):
    calls = []
    real = measurement_module.paired_rounds

    def spy(steps, *args, **kwargs):
        calls.append(list(steps))
        return real(steps, *args, **kwargs)

    monkeypatch.setattr(measurement_module, "paired_rounds", spy)
    se = attnbench.build_model("resnet18", "se")
    plain = attnbench.build_model("resnet18")
    measured = attnbench.latency(se, torch.randn(1, 3, 32, 32), baseline=plain, device="cpu", **TINY)
    assert calls == [["model", "none"]]  # one timing loop, the suite's, over both steps
    assert 3 <= len(measured.latency_ms) <= 5 and set(measured.rounds) == set(measured.baseline.rounds)
    assert measured.overhead.pairs == len(set(measured.rounds))
    assert (measured.description, measured.baseline.description) == ("resnet18 + se", "resnet18")
    assert measured.to_frame()["latency_overhead_pct"].notna().iloc[0]


def test_latency_leaves_the_model_as_it_was():
    model = tiny_model().train()
    before = copy.deepcopy(model.state_dict())
    measured = attnbench.latency(model, torch.randn(2, 3, 8, 8), mode="train", device="cpu", **TINY)
    assert measured.mode == "train" and measured.median_ms > 0
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    attnbench.latency(model, torch.randn(2, 3, 8, 8), device="cpu", channels_last=True, **TINY)
    assert not model.training and model[0].weight.is_contiguous()


def test_latency_of_a_callable_calls_it_as_it_is():
    calls = []
    measured = attnbench.latency(lambda: calls.append(1), device="cpu", precision=50.0, **TINY)
    assert len(calls) == TINY["warmup"] + len(measured.latency_ms)
    assert measured.precision_met is not None and "precision_met" in measured.to_frame()


def test_latency_runs_a_model_in_a_deployment_runtime():
    measured = attnbench.latency(tiny_model().eval(), torch.randn(1, 3, 8, 8), baseline=tiny_model().eval(),
                                 device="cpu", runtime="onnxruntime", **TINY)
    assert measured.runtime == "onnxruntime" and measured.runtime_build_s > 0
    assert measured.overhead is not None and measured.to_frame()["runtime"].tolist() == ["onnxruntime"] * 2


@pytest.mark.parametrize("call, error, message", [
    (lambda: attnbench.latency(tiny_model()), attnbench.UsageError, "needs an input"),
    (lambda: attnbench.latency(tiny_model(), torch.ones(1), runtime="tvm"), attnbench.UsageError,
     "unknown runtime 'tvm'"),
    (lambda: attnbench.latency(lambda: None, runtime="inductor"), attnbench.UsageError, "runtime applies to models"),
    (lambda: attnbench.latency(tiny_model(), torch.ones(2, 3, 4, 4), device="cpu", mode="train",
                               runtime="openvino"), attnbench.DeviceError, "inference only"),
    (lambda: attnbench.latency(lambda: None, torch.ones(1)), attnbench.UsageError, "without arguments"),
    (lambda: attnbench.latency(lambda: None, mode="train"), attnbench.UsageError, "mode applies to models"),
    (lambda: attnbench.latency(42), attnbench.UsageError, "cannot time 42"),
    (lambda: attnbench.latency(tiny_model(), torch.ones(1), dtype="half"), attnbench.UsageError, "dtype"),
    (lambda: attnbench.latency(lambda: None, device="tpu"), attnbench.DeviceError, "accepted: auto, cpu, cuda"),
    (lambda: attnbench.latency(tiny_model(), torch.ones(1, 3, 4, 4), device="cpu", dtype="float16"),
     attnbench.DeviceError, "float16"),
    (lambda: attnbench.latency(lambda: None, min_repeats=5, max_repeats=2), attnbench.ConfigError, "max_repeats"),
    (lambda: attnbench.latency(lambda: None, warmup_seconds=-1.0), attnbench.ConfigError, "warmup_seconds: must be >= 0"),
])
def test_latency_refuses_with_typed_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- runs -----------------------------------------------------------------------------------------


def test_run_suite_by_name_runs_quietly_with_a_progress_callback(project_dir, capsys):
    seen = []
    run = attnbench.run_suite(
        "tiny", config=project_dir / "attnbench.toml", attention=["none", "se"], backbone="resnet18",
        progress=lambda done, total, case: seen.append((done, total, case.attention.label)),
    )
    assert run.path.parent == project_dir / "results" and run.meta["suite"]["name"] == "tiny"
    assert run.cases["attention"].tolist() == ["none", "se"] and (run.cases["status"] == "ok").all()
    assert run.samples.columns[:5].tolist() == ["case_id", "repeat", "round", "latency_ms", "wall_ms"]
    assert seen == [(0, 2, "none"), (2, 2, "none")]  # one comparison group: its start, then the end
    assert capsys.readouterr() == ("", "")
    with pytest.raises(attnbench.ConfigError, match="--attention 'cbam' is not in suite 'tiny'"):
        attnbench.run_suite("tiny", config=project_dir / "attnbench.toml", attention="cbam")


def test_run_suite_shows_the_commands_progress_bar_when_asked(tmp_path, monkeypatch):
    import attnbench.progress

    shown = []
    real = attnbench.progress.progress_bar

    def spy(console):
        shown.append(console.stderr)
        return real(console)

    monkeypatch.setattr(attnbench.progress, "progress_bar", spy)
    run = attnbench.run_suite(tiny_suite(["complexity"], ["none"]), tmp_path, progress=True)
    assert shown == [True] and run.meta["suite"]["name"] == "python"


def test_run_suite_runs_groups_on_local_workers_when_asked(tmp_path):
    run = attnbench.run_suite(tiny_suite(["complexity"]), tmp_path, workers=1)
    assert run.meta["executor"]["kind"] == "local" and set(run.cases["worker"].astype(str)) == {"0"}
    assert (run.cases["status"] == "ok").all()


@pytest.mark.parametrize(("options", "message"), [
    ({"executor": "cloud"}, "executor 'cloud' is not accepted; accepted: process, local"),
    ({"workers": 0}, "workers 0 is not accepted"),
    ({"progress": "yes"}, "progress 'yes' is not accepted"),
])
def test_run_suite_refuses_bad_executor_options(tmp_path, options, message):
    with pytest.raises(attnbench.UsageError, match=message):
        attnbench.run_suite(tiny_suite(["complexity"]), tmp_path, **options)


def test_a_suite_dict_is_validated_like_a_suite_file(tmp_path):
    bad = tiny_suite(["latency"])
    bad["grid"]["batch_sizes"] = (0,)
    with pytest.raises(attnbench.ConfigError, match=r"run_suite\(suite=...\): grid.batch_sizes: values must be >= 1"):
        attnbench.run_suite(bad, tmp_path)
    with pytest.raises(attnbench.UnknownNameError, match="suite 'nope'"):
        attnbench.run_suite("nope", tmp_path)


def test_load_run_reads_a_run_or_the_latest_of_a_folder(tmp_path):
    assert attnbench.load_run(DATA).run_id == "20260106T090000-d4e5f6"
    run = attnbench.load_run(OLD_RUN)
    assert isinstance(run, attnbench.Run) and run.meta["run_id"] == OLD_RUN.name
    assert {"latency_ms_median", "attention"} <= set(run.cases.columns) and not run.samples.empty
    with pytest.raises(attnbench.ResultsError, match="does not exist"):
        attnbench.load_run(tmp_path / "missing")
    with pytest.raises(attnbench.ResultsError, match="holds no run directories"):
        attnbench.load_run(tmp_path)


def test_compare_runs_is_the_gates_verdicts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no attnbench.toml: the default thresholds, as the command has them here
    frame = attnbench.compare_runs(OLD_RUN, attnbench.load_run(NEW_RUN), max_slowdown="5%")
    engine = gate.compare_runs(gate.resolve_run(OLD_RUN, "baseline"), gate.resolve_run(NEW_RUN, "current"))
    pd.testing.assert_frame_equal(frame, comparison_records(engine))
    assert frame.attrs["passed"] == engine.passed and frame.attrs["warnings"] == list(engine.warnings)
    assert main(["compare", str(OLD_RUN), str(NEW_RUN)]) == (0 if frame.attrs["passed"] else 1)
    with pytest.raises(attnbench.GateError, match="does not exist"):
        attnbench.compare_runs(tmp_path / "missing", NEW_RUN)
    with pytest.raises(attnbench.ConfigError, match="max_slowdown"):
        attnbench.compare_runs(OLD_RUN, NEW_RUN, max_slowdown="lots")


def test_compare_runs_takes_the_commands_force_and_fail_on_inconclusive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = Path(shutil.copytree(NEW_RUN, tmp_path / "20260107T100000-b1b2c3"))
    meta = json.loads((again / "meta.json").read_text())
    meta["run_id"] = again.name
    (again / "meta.json").write_text(json.dumps(meta))
    frame = attnbench.compare_runs(NEW_RUN, again)
    assert frame.attrs["passed"] and (frame["verdict"] == "inconclusive").any()
    assert not attnbench.compare_runs(NEW_RUN, again, fail_on_inconclusive=True).attrs["passed"]
    meta["suite"]["name"] = "other"
    (again / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(attnbench.GateError, match=r"compare_runs\(force=True\)"):
        attnbench.compare_runs(NEW_RUN, again)
    forced = attnbench.compare_runs(NEW_RUN, again, force=True)
    assert "suite 'other'" in forced.attrs["warnings"][0]


def test_write_report_writes_what_the_command_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    written = attnbench.write_report(attnbench.load_run(NEW_RUN), tmp_path / "api", fmt="csv")
    assert main(["report", str(NEW_RUN), "--out", str(tmp_path / "cli"), "--format", "csv"]) == 0
    capsys.readouterr()
    files = sorted(path.name for path in written.iterdir())
    assert files and files == sorted(path.name for path in (tmp_path / "cli").iterdir())
    for name in files:
        assert (written / name).read_text() == (tmp_path / "cli" / name).read_text()
    compared = attnbench.write_report([OLD_RUN, NEW_RUN], tmp_path / "both.json", fmt="json")
    assert '"comparison"' in compared.read_text()
    assert capsys.readouterr() == ("", "")
    with pytest.raises(attnbench.UnknownNameError, match="report format 'pdf'"):
        attnbench.write_report(NEW_RUN, fmt="pdf")


# --- the README -----------------------------------------------------------------------------------


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    marker = "<!-- the block below is executed by tests/test_api.py -->"
    return re.search(re.escape(marker) + r"\n```python\n(.*?)```", readme, re.DOTALL).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it writes results/ where it runs
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102  (the README is the subject)
    out = capsys.readouterr().out
    assert "16 SE modules at placement 'block'" in out and "SE adds 2,514,944 parameters" in out
    assert "<attnbench.Measurement> resnet50 + se" in out
    overheads = namespace["overheads"]
    assert overheads.index.tolist() == ["eca", "se"] and overheads.columns.tolist() == [1, 2]
    assert (tmp_path / "results" / namespace["run"].run_id / "cases.csv").is_file()
