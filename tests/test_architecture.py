"""One case key, one prepared case per case, groups timed together, the compile counters, migrations."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

import attnbench.group as group_module
import attnbench.measure.prepared as prepared_module
from attnbench.cli import main
from attnbench.config import TimingSpec, attention_entry, expand_grid, make_case, parse_suite
from attnbench.executors import base as executor_base
from attnbench.group import GroupRunner
from attnbench.measure import MeasureContext
from attnbench.measure.timing import CpuTimer, group_flush
from attnbench.modules import ATTENTION
from attnbench.results import CASE_KEY, SETTING, case_key, read_run
from attnbench.runner import resume_run, run_suite
from attnbench.schedule import Group

DATA = Path(__file__).parent / "data" / "results"
TINY = {"warmup": 1, "min_repeats": 3, "max_repeats": 3, "max_seconds": 0.01}


def suite_of(project, attention: list, metrics: list[str], timing: dict | None = None, **grid):
    base = {"backbones": ["resnet18"], "attention": attention, "batch_sizes": [1], "resolutions": [32], "device": "cpu"}
    return parse_suite(
        {"metrics": metrics, "grid": {**base, **grid}, "timing": {**TINY, **(timing or {})}}, "t.toml", project
    )


def one_case(key: str, **options):
    return make_case("resnet18", attention_entry(key, options), batch_size=1, resolution=32, dtype="float32",
                     mode="eval", device="cpu")


# --- the case key ---------------------------------------------------------------------------------


def test_the_case_key_holds_resolved_options_and_placement():
    se = one_case("se")
    assert tuple(se.key) == CASE_KEY
    assert se.key["options"] == "bias=False;reduction=16" and se.key["placement"] == "block"
    assert one_case("se", reduction=16).case_id == se.case_id  # the default, spelled out
    assert one_case("se", reduction=8).case_id != se.case_id
    assert one_case("coord").key["placement"] == "block"  # `expanded` falls back in ResNets
    assert one_case("none").key["options"] == "" and one_case("none").key["placement"] == ""
    assert se.setting == one_case("none").setting == tuple(se.key[c] for c in SETTING)


def test_changing_a_default_makes_a_new_case(monkeypatch):
    before = one_case("se")
    spec = ATTENTION.get("se")
    monkeypatch.setitem(ATTENTION._entries, "se", dataclasses.replace(spec, defaults={**spec.defaults, "reduction": 8}))
    after = one_case("se")
    assert after.key["options"] == "bias=False;reduction=8" and after.case_id != before.case_id


def test_schema_1_runs_are_migrated_on_read():
    run = read_run(DATA / "20260105T100000-a1b2c3")
    assert run.meta["migrated_from"] == 1
    se = run.cases[(run.cases["attention"] == "se") & (run.cases["batch_size"] == 1)].iloc[0]
    assert (se["options"], se["placement"]) == ("bias=False;reduction=16", "block")
    assert not run.cases["channels_last"].any() and (run.cases["runtime"] == "eager").all()
    assert "compile" not in run.cases
    # The same case run today has the same key: a migrated baseline still matches.
    assert case_key(se) == case_key({**one_case("se").key, "resolution": 64})


def test_resume_of_a_schema_1_run_rewrites_it_and_runs_only_what_is_missing(project, tmp_path, monkeypatch):
    monkeypatch.setattr(executor_base, "copy_bandwidth_gbs", lambda device, clock: {"copy_bandwidth_gbs": 1.0})
    suite = suite_of(project, ["none", "se", "eca"], ["latency"])
    run_dir = run_suite(suite, project, tmp_path)
    cases = (run_dir / "cases.csv").read_text().splitlines()
    meta = json.loads((run_dir / "meta.json").read_text())
    # Make it a schema-1 run that stopped after its first case: given options only, no placement.
    header = cases[0].split(",")
    first = dict(zip(header, cases[1].split(",")))
    first.update(options="", placement="")
    (run_dir / "cases.csv").write_text(cases[0] + "\n" + ",".join(first[c] for c in header) + "\n")
    (run_dir / "meta.json").write_text(json.dumps({**meta, "schema_version": 1, "status": "interrupted"}))
    resume_run(run_dir, project)
    resumed = read_run(run_dir)
    assert resumed.meta["schema_version"] == 3 and "migrated_from" not in resumed.meta
    assert resumed.cases["attention"].tolist() == ["none", "se", "eca"]
    assert resumed.cases["placement"].tolist() == ["", "block", "block"]


# --- one prepared case ----------------------------------------------------------------------------


def test_each_case_is_built_once_and_prepared_once_for_every_metric(project, tmp_path, monkeypatch):
    counts = {"build": 0, "prepare": 0}
    real_build, real_prepare = group_module.build_model, group_module.prepare_case

    def counting_build(*args, **kwargs):
        counts["build"] += 1
        return real_build(*args, **kwargs)

    def counting_prepare(*args, **kwargs):
        counts["prepare"] += 1
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(group_module, "build_model", counting_build)
    monkeypatch.setattr(group_module, "prepare_case", counting_prepare)
    suite = suite_of(project, ["none", "se"], ["complexity", "latency", "memory", "profile"], batch_sizes=[1, 2])
    run = read_run(run_suite(suite, project, tmp_path))
    assert (run.cases["status"] == "ok").all() and len(run.cases) == 4
    assert counts == {"build": 2, "prepare": 4}  # one model per entry (a copy of the stock base) for both batches
    assert run.cases["kernel_count"].notna().all() and run.cases["peak_mem_mib"].notna().all()


def test_a_compiled_group_compiles_each_case_once(project, tmp_path):
    suite = suite_of(project, ["none", "se", "eca"], ["latency", "profile"], {"compile_backend": "eager"},
                     runtimes=["inductor"])
    run = read_run(run_suite(suite, project, tmp_path))
    assert (run.cases["status"] == "ok").all() and (run.cases["runtime"] == "inductor").all()
    assert run.cases["compile_graphs"].tolist() == [1, 1, 1] and run.cases["graph_breaks"].tolist() == [0, 0, 0]
    assert (run.cases["runtime_build_s"] > 0).all() and (run.cases["max_rel_diff"] <= 1e-3).all()
    assert run.cases["attention_time_share"].isna().all()  # no attention boundary left in a compiled step


def test_models_of_one_backbone_share_its_weights():
    runner = GroupRunner(("latency",), MeasureContext(TimingSpec(**TINY), torch.device("cpu")))
    plain, se = (runner.models.get(one_case(key)) for key in ("none", "se"))
    assert torch.equal(plain.model.conv1.weight, se.model.conv1.weight)
    assert plain.model.conv1.weight.data_ptr() != se.model.conv1.weight.data_ptr()
    assert runner.models.get(one_case("se")) is se


# --- groups ---------------------------------------------------------------------------------------


def test_a_group_without_a_case_time_limit_runs(project):
    suite = suite_of(project, ["none", "se"], ["latency"])
    context = MeasureContext(dataclasses.replace(suite.timing, max_case_seconds=None), torch.device("cpu"))
    results = GroupRunner(suite.metrics, context).run(Group(tuple(expand_grid(suite, "cpu"))))
    assert [result.row["status"] for result in results] == ["ok", "ok"]
    assert all(result.row["duration_s"] >= sum(result.samples) / 1e3 for result in results)


class CachedTimer(CpuTimer):
    def cache_bytes(self) -> int:
        return 1000

    def enable_flush(self) -> None:
        self.flush = lambda: None


def test_the_l2_flush_is_decided_once_for_a_group():
    timers = [CachedTimer(torch.device("cpu"), time.perf_counter) for _ in range(2)]
    assert group_flush(timers, "auto", [500, 5000]) is True  # the small case would find its data warm
    assert all(timer.flush is not None for timer in timers)
    timers = [CachedTimer(torch.device("cpu"), time.perf_counter) for _ in range(2)]
    assert group_flush(timers, "auto", [2000, 5000]) is False and all(timer.flush is None for timer in timers)


def test_a_failed_copy_bandwidth_is_recorded_and_the_run_goes_on(project, tmp_path, monkeypatch):
    def full_device(device, clock):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(executor_base, "copy_bandwidth_gbs", full_device)
    run = read_run(run_suite(suite_of(project, ["none"], ["latency"]), project, tmp_path))
    assert run.meta["status"] == "complete" and "copy_bandwidth_gbs" not in run.meta
    assert "CUDA out of memory" in run.meta["copy_bandwidth_error"]
    assert (run.cases["status"] == "ok").all()


def test_profile_configures_the_process_as_run_does(project_dir, monkeypatch, capsys):
    torch.set_num_threads(2)
    applied = []
    real = prepared_module.prepare_step

    def spy(*args, **kwargs):
        applied.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(prepared_module, "prepare_step", spy)
    code = main(["--config", str(project_dir / "attnbench.toml"), "profile", "--backbone", "resnet18",
                 "--attention", "se", "--resolution", "32", "--device", "cpu"])
    assert code == 0 and applied == [1, 1]  # attnbench.toml's threads = 1, for the module and for `none`


def test_cases_that_change_weights_leave_the_cached_model_as_built() -> None:
    cache = group_module.ModelCache()
    entry, spec = attention_entry("se"), {"batch_size": 2, "resolution": 32, "device": "cpu"}
    stock = make_case("resnet18", entry, **spec, dtype="float32", mode="eval")
    weights = {name: tensor.clone() for name, tensor in cache.get(stock).model.state_dict().items()}
    timing = TimingSpec(low_precision="convert")
    for dtype, mode in (("bfloat16", "eval"), ("float32", "train")):
        case = make_case("resnet18", entry, **spec, dtype=dtype, mode=mode)
        prepared = prepared_module.prepare_case(case, cache.get(case), torch.device("cpu"), timing, time.perf_counter)
        for _ in range(3):
            prepared.step()
        assert prepared.model is not cache.get(stock).model
        assert {site.module for site in prepared.sites} <= set(prepared.model.modules())
    for name, tensor in cache.get(stock).model.state_dict().items():
        assert tensor.dtype == weights[name].dtype and torch.equal(tensor, weights[name]), name
