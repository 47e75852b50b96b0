"""A grid over several workers: local workers pinned to GPUs or cores, submitit tasks (its local executor
stands in for SLURM), shards merged into one run, where each row ran, and kill-and-resume with workers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.cli import main
from attnbench.config import BUILT_IN_SUITES, SlurmConfig, expand_grid, load_project, load_suite, parse_suite
from attnbench.errors import ConfigError, DeviceError, ResultsError, UsageError
from attnbench.executors import ExecutorChoice
from attnbench.executors import local as local_module
from attnbench.executors.local import plan_pins
from attnbench.measure import bandwidth
from attnbench.report.header import warning_lines
from attnbench.report.view import RunView
from attnbench.results import find_runs, read_run
from attnbench.results.merge import merge_runs
from attnbench.results.reader import PROCESS_GONE
from attnbench.runner import resume_run, run_suite
from attnbench.schedule import Shard, comparison_groups
from tests.conftest import write

ROOT = Path(__file__).resolve().parent.parent
TINY_TIMING = {"warmup": 0, "min_repeats": 2, "max_repeats": 2, "max_seconds": 0.01}


@pytest.fixture(autouse=True)
def small_copy(monkeypatch):
    monkeypatch.setitem(bandwidth.COPY_BUFFER_BYTES, "cpu", 2**20)


def grid_suite(project, attention=("none", "se"), batch_sizes=(1, 2), backbones=("resnet18",), **timing):
    return parse_suite(
        {"name": "grid", "metrics": ["complexity", "latency"],
         "grid": {"backbones": list(backbones), "attention": list(attention), "batch_sizes": list(batch_sizes),
                  "resolutions": [32], "device": "cpu"},
         "timing": {**TINY_TIMING, **timing}},
        "grid.toml", project,
    )


def smoke(project):
    """The shipped smoke suite (its grid and case ids) with a tiny timing budget: case ids do not depend on it."""
    suite = load_suite(str(BUILT_IN_SUITES / "smoke.toml"), project)
    return parse_suite({**suite.raw, "timing": TINY_TIMING}, BUILT_IN_SUITES / "smoke.toml", project)


# --- local workers: pins -----------------------------------------------------------------------------


def test_cpu_workers_split_the_cores(monkeypatch):
    monkeypatch.setattr(local_module, "available_cores", lambda: [0, 1, 2, 3])
    cpu = torch.device("cpu")
    assert [(p.threads, p.cores) for p in plan_pins(cpu, 2, None)] == [(2, (0, 1)), (2, (2, 3))]
    assert [(p.threads, p.cores) for p in plan_pins(cpu, 2, 1)] == [(1, (0,)), (1, (1,))]
    assert [p.worker for p in plan_pins(cpu, None, 2)] == ["0", "1"]  # auto: one worker per `threads` cores
    with pytest.raises(DeviceError, match="--workers 8: 4 CPU core"):  # two workers on a core time each other
        plan_pins(cpu, 8, None)


def test_gpu_workers_get_one_visible_device_each(monkeypatch):
    monkeypatch.setattr(local_module, "available_cores", lambda: list(range(8)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    pins = plan_pins(torch.device("cuda"), None, None)
    assert [(p.cuda_index, p.cuda_visible, p.cores) for p in pins] == [(0, "3", (0, 1, 2, 3)), (1, "5", (4, 5, 6, 7))]
    with pytest.raises(DeviceError, match="--workers 3: 2 CUDA device"):
        plan_pins(torch.device("cuda"), 3, None)


# --- local workers: runs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_local_workers_on_smoke_give_the_cases_of_one(project, tmp_path):
    suite = smoke(project)
    one = read_run(run_suite(suite, project, tmp_path / "one", executor=ExecutorChoice("local", 1)))
    two = read_run(run_suite(suite, project, tmp_path / "two", executor=ExecutorChoice("local", 2)))
    expected = [case.case_id for case in expand_grid(suite, "cpu")]
    for run in (one, two):
        assert run.meta["status"] == "complete" and (run.cases["status"] == "ok").all()
        assert sorted(run.cases["case_id"]) == sorted(expected) and run.cases["case_id"].is_unique
        assert run.meta["executor"]["threads_per_worker"] == run.meta["threads"] == 1
    assert two.cases["case_id"].tolist() == one.cases["case_id"].tolist()  # read in grid order either way
    assert set(one.cases["worker"]) == {"0"} and set(two.cases["worker"]) == {"0", "1"}
    assert two.meta["executor"]["workers"] == 2 and len(two.meta["worker_pins"]) == 2
    # A group never splits: a module and its `none` ran in one worker.
    for _, group in two.cases.groupby(["backbone", "batch_size"]):
        assert group["worker"].nunique() == 1
    assert (two.cases["host"] == one.meta["host"]).all() and two.cases["device_index"].isna().all()
    assert two.cases["bandwidth_fraction"].notna().all()  # each worker measured its own copy bandwidth


def test_a_worker_that_dies_gives_error_rows_and_the_run_goes_on(project, tmp_path):
    import crashing_attention

    crashing_attention.register()
    attention = ("none", {"name": "crash_segv", "backbones": ["resnet18"]})
    suite = grid_suite(project, attention=attention, batch_sizes=(1,), backbones=("resnet18", "resnet34"))
    run = read_run(run_suite(suite, project, tmp_path, executor=ExecutorChoice("local", 2)))
    assert run.meta["status"] == "complete"
    rows = run.cases.set_index(["backbone", "attention"])
    assert rows.loc[("resnet18", "crash_segv"), "status"] == "error"
    assert "local worker" in rows.loc[("resnet18", "crash_segv"), "error"]
    assert "SIGSEGV" in rows.loc[("resnet18", "crash_segv"), "error"]
    assert rows.loc[("resnet18", "none"), "status"] == "ok"  # run again alone in a fresh worker
    assert rows.loc[("resnet34", "none"), "status"] == "ok"


def test_in_process_rows_record_where_they_ran(project, tmp_path):
    run = read_run(run_suite(grid_suite(project, batch_sizes=(1,)), project, tmp_path))
    assert set(run.cases["worker"]) == {"0"} and run.cases["host"].notna().all()
    assert run.cases["device_index"].isna().all() and run.cases["device_name"].eq(run.meta["device_name"]).all()
    assert "executor" not in run.meta  # runs in this process record nothing new


# --- submitit ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_submitit_local_runs_the_grid_end_to_end(project, tmp_path, monkeypatch):
    import crashing_attention

    crashing_attention.register()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    attention = ("none", "se", {"name": "crash_exit", "backbones": ["resnet34"]})
    suite = grid_suite(project, attention=attention, batch_sizes=(1,), backbones=("resnet18", "resnet34"))
    run_dir = run_suite(suite, project, tmp_path / "results", executor=ExecutorChoice("submitit-local", 2))
    run = read_run(run_dir)
    assert run.meta["status"] == "complete" and run.meta["executor"]["kind"] == "submitit-local"
    assert sorted(run.cases["case_id"]) == sorted(case.case_id for case in expand_grid(suite, "cpu"))
    rows = run.cases.set_index(["backbone", "attention"])
    assert (rows.loc["resnet18", "status"] == "ok").all() and rows.loc["resnet18", "worker"].nunique() == 1
    # The task that died: every case of its group is an error row naming the task.
    failed = rows.loc["resnet34"]
    assert (failed["status"] == "error").all()
    assert failed["error"].str.contains("local task").all() and failed["error"].str.contains("without a result").all()
    assert (tmp_path / "results" / ".submitit").is_dir()
    # --resume submits only what is missing.
    cases = pd.read_csv(run_dir / "cases.csv", dtype=str, keep_default_na=False)
    kept = (cases["backbone"] == "resnet18") & (cases["attention"] == "none")
    cases[kept].to_csv(run_dir / "cases.csv", index=False)
    submitted = []
    from attnbench.executors import slurm

    real = slurm.Submitit.run_groups

    def spy(self, groups, *args):
        submitted.extend(groups)
        return real(self, groups, *args)

    monkeypatch.setattr(slurm.Submitit, "run_groups", spy)
    resumed = read_run(resume_run(run_dir, project).path)
    assert [len(group.cases) for group in submitted] == [1, 3]  # se of resnet18's group, resnet34's group
    assert resumed.cases["case_id"].is_unique and len(resumed.cases) == len(run.cases)


def test_slurm_parameters_come_from_the_executor_table(project, tmp_path, monkeypatch):
    fake_bin = write(tmp_path / "bin" / "srun", "#!/bin/sh\nexit 0\n")
    fake_bin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin.parent}{os.pathsep}{os.environ['PATH']}")
    from attnbench.executors.slurm import Submitit

    config = SlurmConfig(partition="gpu", account="lab", gpus_per_task=1, cpus_per_task=8, timeout_min=30,
                         array_parallelism=4, setup=("module load cuda", "source .venv/bin/activate"))
    submitit = Submitit(grid_suite(project), torch.device("cuda"), 2, tmp_path / "sub", config, local=False, parallel=None)
    text = submitit.executor._executor._make_submission_file_text("python -m task", "uid")
    for line in ("--partition=gpu", "--account=lab", "--gpus-per-task=1", "--cpus-per-task=8", "--time=30",
                 "module load cuda", "source .venv/bin/activate"):
        assert line in text
    assert submitit.threads == 8 and submitit.executor._executor.parameters["array_parallelism"] == 4


def test_slurm_without_srun_and_without_submitit_are_one_line_errors(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    from attnbench.executors.slurm import Submitit

    with pytest.raises(UsageError, match="--executor slurm: .*srun"):
        Submitit(grid_suite(project), torch.device("cpu"), 1, tmp_path, SlurmConfig(), local=False, parallel=None)
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(UsageError, match=r"install attnbench's `cluster` extra: pip install 'attnbench\[cluster\]'"):
        Submitit(grid_suite(project), torch.device("cpu"), 1, tmp_path, SlurmConfig(), local=True, parallel=None)


def test_the_executor_slurm_table_is_validated(project_dir):
    config = project_dir / "attnbench.toml"
    write(config, '[executor.slurm]\npartition = "gpu"\ngpus_per_task = 2\nsetup = ["module load cuda"]\nfolder = "logs"\n')
    slurm = load_project(config).slurm
    assert (slurm.partition, slurm.gpus_per_task, slurm.setup, slurm.folder) == ("gpu", 2, ("module load cuda",), project_dir / "logs")
    for text, message in [
        ('[executor.slurm]\npartiton = "gpu"\n', r"executor.slurm.partiton: unknown key; did you mean 'partition'"),
        ("[executor.slurm]\ntimeout_min = 0\n", "executor.slurm.timeout_min: must be >= 1"),
        ('[executor.slurm]\nsetup = "module load cuda"\n', "executor.slurm.setup: expected list"),
        ('[executor.local]\nworkers = 2\n', "executor.local: unknown key"),
    ]:
        write(config, text)
        with pytest.raises(ConfigError, match=message):
            load_project(config)


# --- shards and merge ----------------------------------------------------------------------------------


def test_shards_are_deterministic_whole_groups_that_cover_the_grid(project):
    cases = expand_grid(grid_suite(project, attention=("none", "se", "eca"), batch_sizes=(1, 2, 4)), "cpu")
    parts = [Shard(index, 2).select(cases) for index in (1, 2)]
    assert sorted(c.case_id for part in parts for c in part) == sorted(c.case_id for c in cases)
    assert not {c.case_id for c in parts[0]} & {c.case_id for c in parts[1]}
    assert sorted(c.batch_size for c in parts[0]) == [1, 1, 1, 4, 4, 4]  # groups 0 and 2 of the grid
    assert all(len(group.cases) == 3 for part in parts for group in comparison_groups(part))
    assert Shard.parse("2/2").select(cases) == parts[1]
    for text in ("0/2", "3/2", "x", "1-2"):
        with pytest.raises(UsageError, match="--shard"):
            Shard.parse(text)


def test_merged_shards_equal_the_unsharded_run(project, tmp_path):
    suite = grid_suite(project, attention=("none", "se"), batch_sizes=(1, 2, 4))
    whole = read_run(run_suite(suite, project, tmp_path / "whole"))
    shards = [run_suite(suite, project, tmp_path / "shards", shard=Shard(i, 2)) for i in (1, 2)]
    assert [read_run(path).meta["shard"] for path in shards] == ["1/2", "2/2"]
    merged = read_run(merge_runs(shards, tmp_path / "merged"))
    assert merged.meta["status"] == "complete" and "shard" not in merged.meta
    assert merged.cases["case_id"].tolist() == whole.cases["case_id"].tolist()  # the same cases, in grid order
    assert [origin["shard"] for origin in merged.meta["merged_from"]] == ["1/2", "2/2"]
    assert sorted(merged.samples["case_id"].unique()) == sorted(whole.samples["case_id"].unique())
    assert len(merged.sites) == len(whole.sites)
    # One shard alone does not cover the grid.
    partial = read_run(merge_runs([shards[0], run_suite(suite, project, tmp_path / "other", shard=Shard(1, 3))],
                                  tmp_path / "merged", force=True))
    assert partial.meta["status"] == "incomplete"


def test_merge_refuses_what_is_not_one_grid_unless_forced(project, tmp_path, project_dir, monkeypatch, capsys):
    suite = grid_suite(project, batch_sizes=(1, 2))
    first, second = (run_suite(suite, project, tmp_path / "s", shard=Shard(i, 2)) for i in (1, 2))
    other = run_suite(grid_suite(project, attention=("none", "eca"), batch_sizes=(1,)), project, tmp_path / "o")
    whole = run_suite(suite, project, tmp_path / "w")
    with pytest.raises(ResultsError, match="cannot merge: different suite fingerprint"):
        merge_runs([first, other], tmp_path / "m")
    with pytest.raises(ResultsError, match=r"cannot merge: 2 case\(s\) in more than one run"):
        merge_runs([first, whole], tmp_path / "m")
    meta = json.loads((second / "meta.json").read_text())
    (second / "meta.json").write_text(json.dumps({**meta, "threads": 7}))
    with pytest.raises(ResultsError, match="cannot merge: different threads"):
        merge_runs([first, second], tmp_path / "m")
    with pytest.raises(ResultsError, match="at least two"):
        merge_runs([first], tmp_path / "m")
    with pytest.raises(ResultsError, match=re.escape(f"merge: {tmp_path / 'gone'} does not exist; accepted: two or")):
        merge_runs([tmp_path / "gone"], tmp_path / "m")
    with pytest.raises(ResultsError, match=re.escape(f"{tmp_path / 's'} is a folder of runs: pass its shards'")):
        merge_runs([tmp_path / "s"], tmp_path / "m")
    forced = read_run(merge_runs([first, second, whole], tmp_path / "m", force=True))
    assert forced.cases["case_id"].is_unique and len(forced.cases) == 4
    assert any("different threads" in w for w in forced.meta["warnings"])
    assert any("more than one run" in w for w in forced.meta["warnings"])
    # The command: one line and exit code 2, then forced.
    monkeypatch.chdir(project_dir)
    assert main(["merge", str(first), str(other), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot merge" in err and len(err.splitlines()) == 1
    assert main(["merge", str(first), str(other), "--out", str(tmp_path / "cli"), "--force"]) == 0
    assert "merged 2 runs (incomplete)" in capsys.readouterr().out


def test_resume_of_a_shard_runs_only_its_shard(project, tmp_path):
    suite = grid_suite(project, batch_sizes=(1, 2, 4))
    run_dir = run_suite(suite, project, tmp_path, shard=Shard(2, 2))
    lines = (run_dir / "cases.csv").read_text().splitlines()
    (run_dir / "cases.csv").write_text(lines[0] + "\n" + lines[1] + "\n")
    resumed = read_run(resume_run(run_dir, project).path)
    assert resumed.cases["batch_size"].tolist() == [2, 2] and resumed.meta["shard"] == "2/2"


# --- reading and reporting -----------------------------------------------------------------------------


def test_rows_read_in_grid_order_and_old_headers_are_rewritten_on_resume(project, tmp_path):
    run_dir = run_suite(grid_suite(project, batch_sizes=(1, 2)), project, tmp_path)
    cases = pd.read_csv(run_dir / "cases.csv", dtype=str, keep_default_na=False)
    order = cases["case_id"].tolist()
    # Rows in finishing order, written before the columns of where a case ran existed, the last one missing.
    old = cases.drop(columns=["host", "device_index", "device_name", "worker"]).iloc[[2, 0, 1]]
    old.to_csv(run_dir / "cases.csv", index=False)
    assert read_run(run_dir).cases["case_id"].tolist() == [order[0], order[1], order[2]]
    resumed = read_run(resume_run(run_dir, project).path)
    assert resumed.cases["case_id"].tolist() == order
    assert resumed.cases["worker"].isna().tolist() == [True, True, True, False]


def test_the_report_warns_where_a_comparison_crosses_devices(project, tmp_path):
    run_dir = run_suite(grid_suite(project, batch_sizes=(1, 2)), project, tmp_path)
    cases = pd.read_csv(run_dir / "cases.csv", dtype=str, keep_default_na=False)
    cases.loc[1, "device_name"] = "NVIDIA H100"
    cases.to_csv(run_dir / "cases.csv", index=False)
    text = "\n".join(warning_lines(RunView(read_run(run_dir))))
    assert "cases ran on devices of different names" in text
    assert "resnet18 at 32 px, float32, eval, cpu, batch 1: its modules and `none` ran on different devices" in text
    assert "cpu, batch 2:" not in text


# --- the command line ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--suite", "tiny", "--workers", "0"], "--workers '0': must be >= 1"),
        (["run", "--suite", "tiny", "--workers", "many"], "expected a number of workers or auto"),
        (["run", "--suite", "tiny", "--shard", "3/2"], "--shard '3/2'"),
        (["run", "--resume", "x", "--shard", "1/2"], "--shard goes with --suite"),
        (["run", "--suite", "tiny", "--executor", "slurm", "--workers", "2"], "array_parallelism"),
        (["run", "--suite", "tiny", "--executor", "cloud"],
         "--executor 'cloud' is not an executor; accepted: local, slurm, submitit-local"),
        (["run", "--suite", "tiny", "--threads", "0"], "--threads 0: must be between 1 and 1024"),
        (["run", "--suite", "tiny", "--threads", "all"], '--threads all: expected an integer >= 1 or "auto"'),
    ],
)
def test_executor_arguments_that_do_not_fit_are_one_line_errors(project_dir, monkeypatch, capsys, args, message):
    monkeypatch.chdir(project_dir)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (project_dir / "results").exists()  # refused before any run directory


def test_run_with_workers_and_threads_from_the_command_line(project_dir, monkeypatch):
    monkeypatch.chdir(project_dir)
    assert main(["run", "--suite", "tiny", "--workers", "2", "--threads", "1"]) == 0
    run = read_run(find_runs(project_dir / "results")[0])
    assert run.meta["executor"] == {"kind": "local", "workers": 2, "threads_per_worker": 1}
    assert (run.cases["status"] == "ok").all()


# --- kill and resume -----------------------------------------------------------------------------------


SLOW_SUITE = """
name = "slow"
metrics = ["latency"]
[grid]
backbones = ["resnet18"]
attention = ["none", "se"]
batch_sizes = [1, 2, 3, 4]
resolutions = [32]
device = "cpu"
[timing]
warmup = 1
min_repeats = 3
max_seconds = 0.6
"""


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the worker processes")
def test_killed_driver_takes_its_workers_and_resume_completes_the_grid(project_dir):
    write(project_dir / "suites" / "slow.toml", SLOW_SUITE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "attnbench", "run"]
    driver = subprocess.Popen([*command, "--suite", "slow", "--workers", "2", "--threads", "1"], cwd=project_dir,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = find_runs(project_dir / "results") if (project_dir / "results").exists() else []
        if runs and len((runs[0] / "cases.csv").read_text().splitlines()) > 1:
            break
        assert driver.poll() is None, driver.stderr.read()
        time.sleep(0.05)
    else:
        raise AssertionError("the run produced no rows in time")
    workers = children_of(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    run_dir = runs[0]
    partial = read_run(run_dir)
    # Killed mid-run: the reader sees that the run's writer is gone.
    assert 1 <= len(partial.cases) < 8 and partial.meta["status"] == PROCESS_GONE
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "worker processes outlived their driver"

    resumed = subprocess.run([*command, "--resume", str(run_dir)], cwd=project_dir, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    run = read_run(run_dir)
    assert run.meta["status"] == "complete" and run.meta["executor"]["workers"] == 2
    assert len(run.cases) == 8 and run.cases["case_id"].is_unique and (run.cases["status"] == "ok").all()
    assert set(partial.cases["case_id"]) <= set(run.cases["case_id"])
    assert not run.samples.duplicated(["case_id", "repeat"]).any()
