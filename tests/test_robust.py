"""Failures are rows, interruptions keep what was measured, resumes finish the grid exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from attnbench.cli import main
from attnbench.config import load_suite
from attnbench.modules import ATTENTION, AttentionSpec, Paper
from attnbench.results import PROCESS_GONE, find_runs, read_run
from attnbench.runner import run_suite
from tests.conftest import write

ROOT = Path(__file__).resolve().parent.parent

SLOW_SUITE = """
name = "slow"
metrics = ["latency"]
[grid]
backbones = ["resnet18"]
attention = ["none", "se", "eca"]
batch_sizes = [1, 2]
resolutions = [32]
device = "cpu"
[timing]
warmup = 1
min_repeats = 3
max_seconds = 0.4
"""


class Failing(nn.Module):
    """A gate whose forward does whatever the test asks, to provoke each kind of failure."""

    action = staticmethod(lambda: None)

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).action()
        return x


@pytest.fixture
def failing(monkeypatch):
    """Registers `failing` for this test only; returns a setter for what its forward does."""
    spec = AttentionSpec("failing", Failing, Paper("t", "t", 2000, ""), "block", lambda c: 0, "0")
    monkeypatch.setitem(ATTENTION._entries, "failing", spec)

    def set_action(action):
        monkeypatch.setattr(Failing, "action", staticmethod(action))

    return set_action


def tiny_suite(project, project_dir: Path, extra_timing: str = "", metrics: str = '"complexity", "latency"') -> Path:
    text = (project_dir / "suites" / "tiny.toml").read_text().replace('"se"]', '"failing", "se"]')
    text = text.replace('"complexity", "latency"', metrics)
    text = text.split("[timing]")[0] + "[timing]\nwarmup = 1\nmin_repeats = 3\n"
    return write(project_dir / "suites" / "f.toml", text + (extra_timing or "max_repeats = 5\nmax_seconds = 0.05\n"))


def statuses(run_dir: Path) -> dict[str, tuple[str, str]]:
    cases = read_run(run_dir).cases
    return {row.attention: (row.status, row.error) for row in cases.itertuples()}


def raise_(error: BaseException):
    def action():
        raise error

    return action


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (RuntimeError("kaputt"), "error", "RuntimeError: kaputt"),
        (MemoryError(), "oom", "MemoryError"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "oom", "CUDA out of memory"),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried "
                      "to allocate 8 GB"), "oom", "DefaultCPUAllocator: can't allocate memory"),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"), "oom",
         "CUBLAS_STATUS_ALLOC_FAILED"),
    ],
)
def test_failure_inside_a_case_is_a_row_and_the_run_goes_on(project, project_dir, failing, error, status, message):
    failing(raise_(error))
    run_dir = run_suite(load_suite(str(tiny_suite(project, project_dir)), project), project)
    rows = statuses(run_dir)
    assert rows["failing"][0] == status and message in rows["failing"][1]
    assert rows["none"][0] == rows["se"][0] == "ok", rows
    assert read_run(run_dir).meta["status"] == "complete"


def test_case_over_its_time_limit(project, project_dir, failing):
    failing(lambda: time.sleep(0.2))  # its warm-up and minimum repeats alone take 0.8 s
    suite = tiny_suite(project, project_dir, "max_case_seconds = 0.3\nmax_seconds = 0.25\nmax_repeats = 1000\n")
    run_dir = run_suite(load_suite(str(suite), project), project)
    rows = statuses(run_dir)
    assert rows["failing"][0] == "timeout" and "max_case_seconds = 0.3" in rows["failing"][1]
    assert read_run(run_dir).samples_of(read_run(run_dir).cases.case_id[1]) == []


def test_a_case_stopped_inside_torch_contexts_leaves_no_state_behind(project, project_dir, failing):
    """The timeout lands while the step has grad mode off, inference mode and autocast on (as when it
    fires inside a context manager's __enter__ or __exit__); the train cases after it still learn."""

    def leave_contexts_open_and_hang():
        torch.set_grad_enabled(False)
        torch._C._InferenceMode(True).__enter__()
        torch.autocast("cpu", dtype=torch.bfloat16).__enter__()
        time.sleep(10)

    failing(leave_contexts_open_and_hang)
    timing = "max_case_seconds = 2\nmax_seconds = 0.05\nmax_repeats = 5\nrounds = 1\n"  # each case on its own
    suite = tiny_suite(project, project_dir, timing, '"latency"')
    text = suite.read_text().replace("[timing]", 'modes = ["train"]\n[timing]').replace("batch_sizes = [1]", "batch_sizes = [2]")
    run_dir = run_suite(load_suite(str(write(suite, text)), project), project)
    rows = statuses(run_dir)
    assert rows["failing"][0] == "timeout"
    assert rows["none"][0] == rows["se"][0] == "ok", rows
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and not torch.is_autocast_enabled("cpu")


def test_timeout_fires_again_after_a_swallowed_signal(project, project_dir, failing):
    from attnbench.signals import CaseTimeout

    swallowed: list[bool] = []

    def block_until_the_timer_fires_twice():
        try:
            time.sleep(10)
        except CaseTimeout:
            if swallowed:
                raise
            swallowed.append(True)  # as a weakref callback or __del__ would
            time.sleep(10)  # only a second firing of the timer gets the case out of here

    failing(block_until_the_timer_fires_twice)
    # Latency only: counting complexity alone takes longer than this limit on a slow machine.
    suite = tiny_suite(project, project_dir, "max_case_seconds = 0.3\nmax_seconds = 0.05\nmax_repeats = 5\n", '"latency"')
    started = time.monotonic()
    run_dir = run_suite(load_suite(str(suite), project), project)
    rows = statuses(run_dir)
    assert swallowed and rows["failing"][0] == "timeout"
    assert rows["none"][0] == rows["se"][0] == "ok", rows
    assert time.monotonic() - started < 10  # no sleep ran to its end


@pytest.mark.parametrize(("rounds", "kept"), [(1, ["none"]), (4, [])])
def test_ctrl_c_drops_the_current_case_and_marks_the_run(project_dir, failing, monkeypatch, capsys, rounds, kept):
    """One after the other, the finished case is kept; interleaved, the cases of the interrupted group
    were all still being timed, so the group is dropped whole (a resume measures it again)."""
    monkeypatch.chdir(project_dir)
    tiny_suite(None, project_dir, f"max_repeats = 5\nmax_seconds = 0.05\nrounds = {rounds}\n")
    failing(lambda: os.kill(os.getpid(), signal.SIGINT))
    assert main(["run", "--suite", "f"]) == 130
    run_dir = find_runs(project_dir / "results")[0]
    run = read_run(run_dir)
    assert run.meta["status"] == "interrupted"
    assert run.cases["attention"].tolist() == kept
    err = capsys.readouterr().err
    assert f"resume with: attnbench run --resume {run_dir}" in err.replace("\n", "")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_run_closes_waits_for_its_last_words(project_dir, failing, monkeypatch, capsys, sig):
    """Every row is in when the signal arrives, while meta.json gets its status and the lock goes: the
    run closes first, then the command stops as interrupted, naming the run."""
    import attnbench.runner as runner

    monkeypatch.chdir(project_dir)
    tiny_suite(None, project_dir, "max_repeats = 5\nmax_seconds = 0.05\n")
    failing(lambda: None)  # the suite's third module, here one that works
    calibration = runner._calibration

    def signalled(run_dir: Path) -> dict:
        os.kill(os.getpid(), sig)
        return calibration(run_dir)

    monkeypatch.setattr(runner, "_calibration", signalled)
    assert main(["run", "--suite", "f"]) == 128 + sig
    run_dir = find_runs(project_dir / "results")[0]
    run = read_run(run_dir)
    assert run.meta["status"] == "complete" and run.meta["end_time"]
    assert run.cases["attention"].tolist() == ["none", "failing", "se"]
    assert not (run_dir / ".lock").exists()
    assert str(run_dir) in capsys.readouterr().err.replace("\n", "")


def spawn_run(project_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "attnbench", "run", *args],
        cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_rows(project_dir: Path, count: int, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = find_runs(project_dir / "results") if (project_dir / "results").exists() else []
        if runs and (runs[0] / "cases.csv").exists():
            if len((runs[0] / "cases.csv").read_text().splitlines()) - 1 >= count:
                return runs[0]
        time.sleep(0.05)
    raise AssertionError("the run produced no rows in time")


def assert_complete_once(run_dir: Path, expected: int) -> None:
    run = read_run(run_dir)
    assert run.meta["status"] == "complete"
    assert len(run.cases) == expected and run.cases["case_id"].is_unique
    assert (run.cases["status"] == "ok").all()
    assert not run.samples.duplicated(["case_id", "repeat"]).any()
    for case_id, repeats in zip(run.cases["case_id"], run.cases["repeats"]):
        assert len(run.samples_of(case_id)) == repeats


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_a_complete_grid(project_dir, sig):
    write(project_dir / "suites" / "slow.toml", SLOW_SUITE)
    process = spawn_run(project_dir, "--suite", "slow")
    run_dir = wait_for_rows(project_dir, 2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == (-9 if sig == signal.SIGKILL else 128 + signal.SIGTERM)
    partial = read_run(run_dir)
    assert 2 <= len(partial.cases) < 6
    # SIGKILL leaves meta.json saying `running`; the lock it left unlocked tells the process is gone.
    assert partial.meta["status"] == (PROCESS_GONE if sig == signal.SIGKILL else "interrupted")
    if sig == signal.SIGTERM:
        assert "interrupted by SIGTERM" in err

    resumed = spawn_run(project_dir, "--resume", str(run_dir))
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    assert_complete_once(run_dir, 6)
    assert set(partial.cases["case_id"]) <= set(read_run(run_dir).cases["case_id"])
    assert len(read_run(run_dir).meta["resumed"]) == 1


def test_resume_refuses_a_changed_suite_unless_forced(project, project_dir, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    suite_file = project_dir / "suites" / "tiny.toml"
    run_dir = run_suite(load_suite("tiny", project), project, suite_file_fingerprint=load_suite("tiny", project).fingerprint)
    suite_file.write_text(suite_file.read_text().replace("two modules", "changed"))
    assert main(["run", "--resume", str(run_dir)]) == 2
    assert "changed since run" in capsys.readouterr().err
    assert main(["run", "--resume", str(run_dir), "--force"]) == 0
    assert len(read_run(run_dir).cases) == 2


def test_resume_of_a_complete_run_adds_nothing(project, project_dir):
    run_dir = run_suite(load_suite("tiny", project), project)
    from attnbench.runner import resume_run

    resume_run(run_dir, project)
    assert_complete_once(run_dir, 2)


def test_orphan_samples_are_ignored_and_dropped_on_resume(project, project_dir):
    from attnbench.runner import resume_run

    run_dir = run_suite(load_suite("tiny", project), project)
    with (run_dir / "samples.csv").open("a") as handle:
        handle.write("deadbeef0000,0,0,1.0,\n")
    assert "deadbeef0000" not in set(read_run(run_dir).samples["case_id"])
    resume_run(run_dir, project)
    assert "deadbeef0000" not in (run_dir / "samples.csv").read_text()


@pytest.mark.slow
def test_two_runs_into_one_results_root_do_not_collide(project_dir):
    write(project_dir / "suites" / "slow.toml", SLOW_SUITE.replace("[1, 2]", "[1]"))
    first, second = spawn_run(project_dir, "--suite", "slow"), spawn_run(project_dir, "--suite", "slow")
    for process in (first, second):
        assert process.wait(timeout=180) == 0, process.stderr.read()
    runs = find_runs(project_dir / "results")
    assert len(runs) == 2
    for run_dir in runs:
        assert_complete_once(run_dir, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "run needs exactly one of --suite"),
        (["run", "--suite", "tiny", "--resume", "x"], "run needs exactly one of --suite"),
        (["run", "--resume", "nowhere"], "run directory nowhere does not exist"),
        (["run", "--suite", "tiny", "--device", "cpu", "--attention", "cbam"], "--attention 'cbam' is not in suite"),
        (["run", "--suite", "tiny", "--out", "attnbench.toml"], "is a file"),
        (["run", "--suite", "tiny", "--out", "attnbench.toml/sub"], "cannot create a run directory"),
        (["--config", "missing.toml", "list", "suites"], "missing.toml: file not found"),
    ],
)
def test_usage_errors_are_one_line_exit_2(project_dir, monkeypatch, capsys, args, message):
    monkeypatch.chdir(project_dir)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_float16_on_an_explicit_cpu_is_refused(project, project_dir, tmp_path):
    from attnbench.errors import ConfigError

    text = (project_dir / "suites" / "tiny.toml").read_text().replace('device = "cpu"', 'device = "cpu"\ndtypes = ["float16"]')
    with pytest.raises(ConfigError, match="float16 is not supported on device cpu; accepted: float32, bfloat16"):
        load_suite(str(write(tmp_path / "h.toml", text)), project)


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe", "not a UTF-8 text file"),
    (b"\xef\xbb\xbfname = 'x'\n", "starts with a byte-order mark"),
])
def test_a_suite_file_that_is_not_utf8_text_is_one_line(project_dir, monkeypatch, capsys, content, message):
    monkeypatch.chdir(project_dir)
    (project_dir / "suites" / "binary.toml").write_bytes(content)
    assert main(["run", "--suite", "binary"]) == 2
    err = capsys.readouterr().err
    assert f"binary.toml: {message}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["list", "suites"]) == 0  # the listing shows the broken file with its error
    listed = " ".join(capsys.readouterr().out.split())
    assert "binary - - suites cannot be loaded:" in listed and message.split()[-1] in listed


def test_an_unreadable_suite_file_is_one_line(project_dir, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    opened = Path.open

    def refuse(self, *args, **kwargs):  # as chmod 000 does for anyone but root, who runs these tests here
        if self.name == "tiny.toml":
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    assert main(["run", "--suite", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "tiny.toml: cannot read the file (permission denied)" in err and "Traceback" not in err


def test_malformed_toml_names_file_and_line(project_dir, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    write(project_dir / "suites" / "broken.toml", 'name = "x"\n[grid\nbackbones = []\n')
    assert main(["run", "--suite", "broken"]) == 2
    err = capsys.readouterr().err
    assert "broken.toml: malformed TOML" in err and "line 2" in err
