"""What a newcomer broke in an afternoon: each misuse ends as one line and exit code 2, or works and loses
nothing (concurrent writers, damaged files, a run gated against itself, typed options, output paths, runs
too large for the host, reports of interrupted runs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.config import BUILT_IN_SUITES, attention_entry, filter_suite, list_suites, load_project, load_suite
from attnbench.errors import ConfigError, GateError, ResultsError
from attnbench.gate import compare_runs
from attnbench.modules import ATTENTION
from attnbench.report import write_report
from attnbench.results import PROCESS_GONE, RunWriter, find_runs, read_meta, read_run
from attnbench.results.lock import RunLock
from attnbench.runner import run_suite
from tests.conftest import TINY_SUITE, write
from tests.test_gate import case, make_run, noisy

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "results"
SMOKE = "20260105T100000-a1b2c3"


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the tiny suite (none and se), measured once for this file; tests take copies."""
    folder = tmp_path_factory.mktemp("measured")
    write(folder / "attnbench.toml", 'results_dir = "results"\nthreads = 1\n')
    write(folder / "suites" / "tiny.toml", TINY_SUITE)
    project = load_project(folder / "attnbench.toml")
    suite = load_suite("tiny", project)
    return run_suite(suite, project, suite_file_fingerprint=suite.fingerprint)


@pytest.fixture
def run_dir(measured: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the measured run in this test's project, which is the working directory."""
    monkeypatch.chdir(project_dir)
    return Path(shutil.copytree(measured, project_dir / "results" / measured.name))


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("attnbench: error: "), err
    return err


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run_dir.iterdir())}


def assert_complete_and_consistent(run_dir: Path, cases: int = 2) -> None:
    run = read_run(run_dir)
    assert run.meta["status"] == "complete" and not run.warnings
    assert len(run.cases) == cases and run.cases["case_id"].is_unique and (run.cases["status"] == "ok").all()
    for case_id, repeats in zip(run.cases["case_id"], run.cases["repeats"]):
        assert len(run.samples_of(case_id)) == repeats


# --- 1. one writer per run directory ------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_run_is_held(run_dir: Path, capsys):
    before = files_of(run_dir)
    lock = RunLock.acquire(run_dir)  # the run still going
    try:
        err = one_line_error(capsys, ["run", "--resume", str(run_dir)])
    finally:
        lock.release()
    assert f"run {run_dir.name} is being written by another process (pid {os.getpid()} on " in err
    assert files_of(run_dir) == before


def test_a_killed_writer_leaves_no_stuck_lock_and_reports_say_it_is_gone(run_dir: Path, capsys):
    meta = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom attnbench.results.lock import RunLock\n"
         "RunLock.acquire(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(run_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert read_run(run_dir).meta["status"] == "running"
        assert f"(pid {holder.pid} on " in one_line_error(capsys, ["run", "--resume", str(run_dir)])
    finally:
        holder.kill()
        holder.wait()
    assert read_run(run_dir).meta["status"] == PROCESS_GONE
    report = write_report(run_dir).read_text()
    assert f"| {PROCESS_GONE} |" in report and "is running" not in report
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert_complete_and_consistent(run_dir)
    assert not (run_dir / ".lock").exists()


def test_rows_written_twice_are_read_once_with_a_warning_and_resume_cleans_them(run_dir: Path, capsys):
    for name in ("samples.csv", "cases.csv"):  # as a second writer appends the same cases again
        text = (run_dir / name).read_text()
        (run_dir / name).write_text(text + "".join(text.splitlines(keepends=True)[1:]))
    run = read_run(run_dir)
    assert len(run.cases) == 2 and run.cases["case_id"].is_unique
    assert run.warnings == [f"{run_dir / 'cases.csv'}: 2 case(s) have more than one row (two processes wrote "
                            "the run at once, or a row was copied in): the last row of each is used"]
    for case_id, repeats in zip(run.cases["case_id"], run.cases["repeats"]):
        assert len(run.samples_of(case_id)) == repeats
    assert main(["report", str(run_dir)]) == 0
    assert "warning: " in capsys.readouterr().err and "more than one row" in (run_dir / "report.md").read_text()
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert len((run_dir / "cases.csv").read_text().splitlines()) == 3
    assert_complete_and_consistent(run_dir)


def test_a_row_copied_in_under_another_case_id_is_the_same_case(run_dir: Path, capsys):
    lines = (run_dir / "cases.csv").read_text().splitlines()
    (run_dir / "cases.csv").write_text("\n".join([*lines, "ffffffffffff" + lines[2][12:]]) + "\n")
    run = read_run(run_dir)
    assert len(run.cases) == 2 and run.cases["case_id"].tolist()[-1] == "ffffffffffff"
    assert "1 case(s) have more than one row" in run.warnings[0]
    assert main(["report", str(run_dir)]) == 0
    assert "more than one row" in capsys.readouterr().err


@pytest.mark.parametrize(("edit", "message"), [
    (lambda meta: meta.pop("run_id"), "meta.json: no run_id"),
    (lambda meta: meta.update(suite="tiny"), "meta.json: suite must be an object, got str 'tiny'"),
    (lambda meta: meta.update(left_out=[1]), "meta.json: every item of left_out must be an object"),
    (lambda meta: meta.update(warnings=5), "meta.json: warnings must be a list, got int 5"),
    (lambda meta: meta.update(calibration="x"), "meta.json: calibration must be an object"),
])
def test_a_meta_json_with_a_key_of_the_wrong_type_is_one_line(run_dir: Path, capsys, edit, message):
    meta = json.loads((run_dir / "meta.json").read_text())
    edit(meta)
    (run_dir / "meta.json").write_text(json.dumps(meta))
    for argv in (["report", str(run_dir)], ["run", "--resume", str(run_dir)], ["compare", str(run_dir), str(run_dir)]):
        assert message in one_line_error(capsys, argv)


def test_a_resume_checks_it_can_write_the_run_before_measuring(run_dir: Path, capsys, monkeypatch):
    cases = (run_dir / "cases.csv").read_text()
    (run_dir / "cases.csv").write_text(cases.splitlines(keepends=True)[0])  # both cases left to measure
    opened = Path.open

    def read_only(self, mode="r", *args, **kwargs):  # chmod 444 as seen by anyone but root
        if self.name == "cases.csv" and mode != "r":
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    error = one_line_error(capsys, ["run", "--resume", str(run_dir)])
    assert "cases.csv: cannot be written (Permission denied); a resume appends to it" in error
    monkeypatch.undo()
    assert (run_dir / "samples.csv").read_text().count("\n") > 1  # the earlier samples, nothing appended
    assert read_run(run_dir, repair=True).cases.empty


# --- 2, 10. the baseline: chosen before the run, of the same suite, never the run itself -----------------


def test_a_run_is_never_gated_against_itself(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    gate = ["--baseline", "ci", "--fail-on-regression"]
    assert "baseline ci does not exist" in one_line_error(capsys, ["run", "--suite", "tiny", "--out", "ci", *gate])
    (project_dir / "ci").mkdir()
    assert "holds no run directory" in one_line_error(capsys, ["run", "--suite", "tiny", "--out", "ci", *gate])
    assert find_runs(project_dir / "ci") == []  # refused before anything ran
    assert main(["run", "--suite", "tiny", "--out", "ci"]) == 0
    first = find_runs(project_dir / "ci")[0]
    assert main(["run", "--suite", "tiny", "--out", "ci", "--baseline", "ci"]) in (0, 1)
    second = find_runs(project_dir / "ci")[-1]
    assert second != first
    assert f"- baseline: `{first.name}`" in (second / "compare.md").read_text()
    capsys.readouterr()
    with pytest.raises(GateError, match=f"are the same run {second.name}"):
        compare_runs(read_run(second), read_run(second))
    assert "is the run being resumed" in one_line_error(
        capsys, ["run", "--resume", str(second), "--baseline", str(second)]
    )


def test_runs_of_different_suites_are_refused_unless_forced(tmp_path: Path, capsys):
    base = make_run(tmp_path, "base", [case("none", noisy(10)), case("se", noisy(12))], suite="tiny")
    newer = make_run(tmp_path, "base", [case("none", noisy(10))], suite="other")
    newer.rename(tmp_path / "base" / "29990101T000000-ffffff")  # the folder's latest run, of another suite
    current = make_run(tmp_path, "c", [case("none", noisy(10, seed=1)), case("se", noisy(12, seed=2))],
                       suite="tiny")
    other = make_run(tmp_path, "d", [case("none", noisy(10, seed=1))], suite="other")
    # From a folder holding several suites, the baseline is the latest run of the current run's suite.
    assert main(["compare", str(tmp_path / "base"), str(current), "--out", str(tmp_path / "gate.md")]) == 0
    assert f"- baseline: `{base.name}`" in (tmp_path / "gate.md").read_text()
    err = one_line_error(capsys, ["compare", str(base), str(other)])
    assert f"is of suite 'tiny', the current run {other.name} of suite 'other'" in err and "--force" in err
    assert main(["compare", str(base), str(other), "--force"]) == 0
    assert "warning: the baseline run" in capsys.readouterr().err


# --- 3. damaged files: named by file, line and column; repaired by --resume -------------------------------


def cut_last_value(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind(",") + 2])  # `...,True,1`: a value cut to one digit


def cut_last_line(path: Path) -> None:
    text = path.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    path.write_text(text[: len(text) - len(last) // 2])


def replace_value(path: Path, column: str, value: str, line: int = 2) -> None:
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    fields = lines[line - 1].rstrip("\n").split(",")
    fields[header.index(column)] = value
    lines[line - 1] = ",".join(fields) + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: cut_last_value(d / "cases.csv"), r"cases\.csv:3: the line is cut off \(no line end\)"),
        (lambda d: cut_last_line(d / "cases.csv"),
         r"cases\.csv:3: \d+ fields where the header has \d+ \(the line is cut off\)"),
        (lambda d: replace_value(d / "cases.csv", "latency_ms_median", "abc"),
         r"cases\.csv:2: column latency_ms_median: value 'abc' is not a number"),
        (lambda d: replace_value(d / "cases.csv", "noisy", "Tr", line=3),
         r"cases\.csv:3: column noisy: value 'Tr' is not true or false"),
        (lambda d: replace_value(d / "samples.csv", "latency_ms", "1.2.3", line=4),
         r"samples\.csv:4: column latency_ms: value '1\.2\.3' is not a number"),
        (lambda d: replace_value(d / "attention_sites.csv", "channels", "6x"),
         r"attention_sites\.csv:2: column channels: value '6x' is not an integer"),
        (lambda d: (d / "samples.csv").write_text((d / "samples.csv").read_text()[:-3]),
         r"samples\.csv:\d+: the line is cut off \(no line end\)"),
        (lambda d: replace_value(d / "samples.csv", "latency_ms", "-5", line=3),
         r"samples\.csv:3: column latency_ms: value '-5' is not a time \(a finite number >= 0\)"),
        (lambda d: replace_value(d / "samples.csv", "wall_ms", "nan", line=2),
         r"samples\.csv:2: column wall_ms: value 'nan' is not a time"),
        (lambda d: replace_value(d / "cases.csv", "batch_size", "-3"),
         r"cases\.csv:2: column batch_size: value '-3' is not a count \(an integer >= 1\)"),
    ],
)
def test_a_damaged_file_is_named_and_resume_measures_its_case_again(run_dir: Path, capsys, damage, message):
    damage(run_dir)
    with pytest.raises(ResultsError, match=message):
        read_run(run_dir)
    err = one_line_error(capsys, ["report", str(run_dir)])
    assert f"`attnbench run --resume {run_dir}` drops such rows" in err
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert "dropped" in capsys.readouterr().err
    assert_complete_and_consistent(run_dir)


def test_a_line_still_being_appended_is_not_a_bad_line(tmp_path: Path):
    writer = RunWriter.create(tmp_path, {"suite": {"name": "t"}})
    writer.append_case({"case_id": "a1", "status": "ok"}, [1.0])
    with (writer.path / "cases.csv").open("a") as handle:
        handle.write("b2,resnet18,se")  # the writer is in the middle of this row
    assert read_run(writer.path).cases["case_id"].tolist() == ["a1"]
    writer.close()  # the writer is gone and the row is still cut: now it is one
    with pytest.raises(ResultsError, match=r"cases\.csv:3: 3 fields where the header has"):
        read_run(writer.path)


# --- 4. typed options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{ name = "se", bias = "false" }', "option bias: got str 'false'; accepted: bool (true or false)"),
        ('{ name = "se", bias = "yes" }', "option bias: got str 'yes'; accepted: bool (true or false)"),
        ('{ name = "se", reduction = "8" }', "option reduction: got str '8'; accepted: int"),
        ('{ name = "se", reduction = 2.5 }', "option reduction: got float 2.5; accepted: int"),
        ('{ name = "eca", k_size = 3.0 }', "option k_size: got float 3.0; accepted: int or str"),
        ('{ name = "gct", mode = 2 }', "option mode: got int 2; accepted: str"),
    ],
)
def test_option_values_of_the_wrong_type_are_refused(project, tmp_path: Path, entry: str, message: str):
    text = TINY_SUITE.replace('attention = ["none", "se"]', f'attention = ["none", {entry}]')
    with pytest.raises(ConfigError, match=r"grid\.attention: attention '[a-z]+': " + re.escape(message)):
        load_suite(str(write(tmp_path / "typed.toml", text)), project)


def test_options_keep_their_types_and_an_int_is_a_float_where_one_is_wanted():
    assert attention_entry("se", {"bias": True}).resolved == (("bias", True), ("reduction", 16))
    srm = attention_entry("srm", {"eps": 0})
    assert srm.resolved == (("eps", 0.0),) and srm.label == "srm"  # the default, whichever way it is written
    for key, spec in ATTENTION.items():
        assert spec.resolve_options(spec.defaults) == spec.defaults, key


@pytest.mark.parametrize(
    ("option", "message"),
    [("bias=False", "option bias: got str 'False'"), ("reduction=abc", "option reduction: got str 'abc'")],
)
def test_profile_options_are_typed(capsys, option: str, message: str):
    err = one_line_error(capsys, ["profile", "--backbone", "resnet18", "--attention", "se", "--option", option])
    assert message in err


# --- 5, 6, 7. output paths: checked and created before the work ------------------------------------------


@pytest.fixture
def fixed_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(DATA, tmp_path / "results"))


def test_report_out_creates_its_folders_and_encodes_figure_links(fixed_results: Path):
    assert main(["report", str(fixed_results / SMOKE), "--out", "docs/bench.md"]) == 0
    assert Path("docs/bench.md").is_file() and list(Path("docs/bench-figures").glob("*.png"))
    assert main(["report", str(fixed_results / SMOKE), "--out", "my docs/my report.md"]) == 0
    text = Path("my docs/my report.md").read_text()
    links = [line for line in text.splitlines() if line.startswith("![")]
    assert links and all(line.split("](")[1].startswith("my%20report-figures/") for line in links)
    assert main(["report", str(fixed_results / SMOKE), "--format", "csv", "--out", "a/new/dir"]) == 0
    assert Path("a/new/dir/overhead.csv").is_file()


def test_report_paths_it_cannot_write_are_one_line(fixed_results: Path, capsys, monkeypatch):
    Path("afile").write_text("x")
    run = str(fixed_results / SMOKE)
    assert "--out afile is a file" in one_line_error(capsys, ["report", run, "--format", "csv", "--out", "afile"])
    assert "afile is a file, not a folder" in one_line_error(capsys, ["report", run, "--out", "afile/x.md"])
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", denied)
    assert "cannot write the report" in one_line_error(capsys, ["report", run, "--out", "ok.md"])
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # a folder of someone else's
    assert "is not writable" in one_line_error(capsys, ["report", run, "--out", "elsewhere/x.md"])


def test_profile_checks_its_outputs_before_profiling(project_dir: Path, monkeypatch, capsys):
    import attnbench.measure.profile as profile

    monkeypatch.chdir(project_dir)
    argv = ["profile", "--backbone", "resnet18", "--attention", "se", "--resolution", "32", "--steps", "1"]
    real = profile.profile_against_baseline
    monkeypatch.setattr(profile, "profile_against_baseline", lambda *a, **k: pytest.fail("profiled anyway"))
    Path("afile").write_text("x")
    assert "afile is a file, not a folder" in one_line_error(capsys, [*argv, "--out", "afile/x.md"])
    assert "afile is a file, not a folder" in one_line_error(capsys, [*argv, "--trace", "afile/x.json"])
    monkeypatch.setattr(profile, "profile_against_baseline", real)
    assert main([*argv, "--out", "missing/x.md", "--trace", "missing_dir/x.json"]) == 0
    assert Path("missing/x.md").read_text().strip() and json.loads(Path("missing_dir/x.json").read_text())


# --- 8. memory: cases that cannot fit are skipped with the estimate; killed runs (above) --------------------


def test_a_case_that_cannot_fit_is_skipped_with_its_estimate(project, project_dir: Path, monkeypatch):
    import attnbench.measure.footprint as footprint

    monkeypatch.setattr(footprint, "available_bytes", lambda device: 8 * 2**20)
    text = TINY_SUITE.replace("batch_sizes = [1]", "batch_sizes = [1, 64]")
    run = read_run(run_suite(load_suite(str(write(project_dir / "big.toml", text)), project), project))
    rows = {row.batch_size: (row.status, row.error) for row in run.cases[run.cases["attention"] == "none"].itertuples()}
    assert rows[1][0] == "ok"
    status, reason = rows[64]
    assert status == "skipped" and reason.startswith("needs at least ") and "8.0 MiB available on cpu" in reason


def test_the_estimate_is_exact_for_an_eval_forward_and_a_lower_bound_for_training():
    import time

    import torch

    from attnbench.backbones import build_model
    from attnbench.config import TimingSpec, make_case
    from attnbench.measure.footprint import needed_bytes
    from attnbench.measure.memory import cpu_peak
    from attnbench.measure.prepared import prepare_case

    cpu = torch.device("cpu")
    for mode in ("eval", "train"):
        case = make_case("resnet18", attention_entry("se"), batch_size=4, resolution=64, dtype="float32",
                         mode=mode, device="cpu")
        built = build_model("resnet18", "se", {})
        estimate = needed_bytes(case, built, cpu, {})
        prepared = prepare_case(case, built, cpu, TimingSpec(), time.perf_counter)
        prepared.step()
        measured = cpu_peak(prepared.step, case, cpu).peak_bytes + prepared.inputs[0].nbytes
        if mode == "eval":
            assert estimate == pytest.approx(measured, rel=1e-3)
        else:
            assert 0.5 * measured < estimate <= measured


def test_host_memory_is_meminfo_within_the_cgroup_limit(tmp_path: Path, monkeypatch):
    import attnbench.measure.footprint as footprint

    write(tmp_path / "meminfo", "MemTotal:       24684092 kB\nMemAvailable:    8388608 kB\n")
    monkeypatch.setattr(footprint, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(footprint, "CGROUP", tmp_path / "cgroup")
    monkeypatch.setattr(footprint, "_heap_free", lambda: 1024)
    assert footprint.host_available() == 8 * 2**30 + 1024
    write(tmp_path / "cgroup" / "memory.max", f"{4 * 2**30}\n")
    write(tmp_path / "cgroup" / "memory.current", f"{2**30}\n")
    assert footprint.host_available() == 3 * 2**30 + 1024
    monkeypatch.setattr(footprint, "MEMINFO", tmp_path / "none")
    assert footprint.host_available() is None


# --- 9. the latest run of a suite, for CI scripts ---------------------------------------------------------


def test_latest_prints_the_latest_run_directory_of_a_suite(tmp_path: Path, capsys):
    older, newer = (RunWriter.create(tmp_path, {"suite": {"name": name}}) for name in ("gpu-latency", "other"))
    for writer, run_id in ((older, "20260101T000000-000000"), (newer, "20260102T000000-000000")):
        writer.finish()
        writer.path = writer.path.rename(tmp_path / run_id)  # started in this order
    (tmp_path / "report-figures").mkdir()
    assert main(["latest", str(tmp_path), "--suite", "gpu-latency"]) == 0
    assert main(["latest", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(older.path), str(newer.path)]
    err = one_line_error(capsys, ["latest", str(tmp_path), "--suite", "cpu"])
    assert "holds no run directory of suite 'cpu'" in err


# --- 11. resuming a complete run changes nothing -----------------------------------------------------------


def test_resume_of_a_complete_run_says_nothing_to_do_and_changes_nothing(run_dir: Path, capsys):
    before = files_of(run_dir)
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert f"nothing to do: every case of run {run_dir.name} has a row" in capsys.readouterr().out
    assert files_of(run_dir) == before


# --- 12. what "*" leaves out is listed ---------------------------------------------------------------------


def test_star_lists_what_it_left_out_in_the_suite_meta_run_and_report(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    text = TINY_SUITE.replace('["none", "se"]', '["none", "*"]').replace('"complexity", "latency"', '"complexity"')
    write(project_dir / "suites" / "star.toml", text)
    with monkeypatch.context() as only:  # "*" of two modules: se runs at 32 px, gsop does not
        only.setattr(ATTENTION, "_entries", {key: ATTENTION.get(key) for key in ("se", "gsop")})
        suite = load_suite("star", load_project(project_dir / "attnbench.toml"))
        assert [e.label for e in suite.grid.attention] == ["none", "se"]
        (left_out,) = suite.left_out
        assert (left_out.attention, left_out.backbone) == ("gsop", "resnet18")
        assert "needs feature maps of at least 3x3" in left_out.reason
        assert main(["run", "--suite", "star"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # wrapped at spaces to the terminal's width
    assert " ".join(f'left out of "*": {left_out.reason}'.split()) in out
    run_dir = find_runs(project_dir / "results")[0]
    assert read_meta(run_dir)["left_out"] == [{"attention": "gsop", "backbone": "resnet18", "reason": left_out.reason}]
    with pytest.raises(ConfigError, match=f"--attention 'gsop': left out of \"\\*\": {re.escape(left_out.reason)}"):
        filter_suite(suite, attention=["gsop"])
    assert f'left out of `"*"`: {left_out.reason}' in write_report(run_dir).read_text()


# --- 13. smaller ones ---------------------------------------------------------------------------------------


def test_list_suites_lists_the_good_ones_and_flags_a_bad_one(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    write(project_dir / "suites" / "broken.toml", "name = [\n")
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "broken" in out and "cannot be loaded" in out


@pytest.mark.parametrize("flag", [["--relative"], ["--strict-env"], ["--max-slowdown", "5%"], ["--metric", "wall_ms"]])
def test_gate_options_without_a_baseline_are_refused(project_dir: Path, monkeypatch, capsys, flag):
    monkeypatch.chdir(project_dir)
    assert f"{flag[0]} needs --baseline PATH" in one_line_error(capsys, ["run", "--suite", "tiny", *flag])


def test_a_baseline_the_gate_cannot_use_is_refused_before_the_run(run_dir: Path, capsys):
    before = find_runs(run_dir.parent)
    error = one_line_error(capsys, ["run", "--suite", "tiny", "--baseline", str(run_dir), "--metric", "foo_ms"])
    assert "unknown metric 'foo_ms'; accepted: latency_ms, wall_ms" in error
    samples = (run_dir / "samples.csv").read_text()
    (run_dir / "samples.csv").write_text(samples.splitlines(keepends=True)[0])  # as a complexity-only run
    error = one_line_error(capsys, ["run", "--suite", "tiny", "--baseline", str(run_dir), "--fail-on-regression"])
    assert f"baseline {run_dir} has no latency_ms samples" in error
    assert find_runs(run_dir.parent) == before  # nothing was measured


@pytest.mark.parametrize("flag", [["--backbone", "resnet18"], ["--attention", "se"], ["--device", "cpu"],
                                  ["--runtime", "eager"], ["--calibrate"], ["--out", "elsewhere"]])
def test_options_a_resume_cannot_apply_are_refused(run_dir: Path, capsys, flag):
    error = one_line_error(capsys, ["run", "--resume", str(run_dir), *flag])
    assert f"{flag[0]} goes with --suite; --resume finishes the run's recorded grid" in error
    assert not Path("elsewhere").exists()


def test_force_alone_is_refused(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    assert "--force goes with --resume" in one_line_error(capsys, ["run", "--suite", "tiny", "--force"])


@pytest.mark.parametrize(("line", "message"), [
    ("batch_sizes = [1, 1]", "grid.batch_sizes: values must be distinct, got [1, 1]"),
    ('backbones = ["resnet18", "resnet18"]', "grid.backbones: values must be distinct"),
    ('modes = ["eval", "eval"]', "grid.modes: values must be distinct"),
])
def test_a_grid_value_named_twice_is_refused(project, tmp_path: Path, line: str, message: str):
    key = line.split(" =")[0]
    text = "\n".join(line if row.startswith(key + " =") else row for row in TINY_SUITE.splitlines())
    if key not in TINY_SUITE:
        text = text.replace("[grid]", f"[grid]\n{line}")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_suite(str(write(tmp_path / "twice.toml", text)), project)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", ["max_seconds", "warmup_seconds", "precision", "max_case_seconds"])
def test_timing_numbers_are_finite(project, tmp_path: Path, key: str, value: str):
    text = TINY_SUITE.replace("[timing]", f"[timing]\n{key} = {value}")
    if f"\n{key} =" in TINY_SUITE:
        text = "\n".join(row for row in text.splitlines() if not (row.startswith(f"{key} =") and value not in row))
    with pytest.raises(ConfigError, match=f"timing.{key}: expected a finite number, got {value}"):
        load_suite(str(write(tmp_path / "nan.toml", text)), project)


def test_command_line_mistakes_are_one_line_with_where_to_read_more(capsys):
    assert main_exit(["profile", "--batch", "abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "attnbench profile: error: argument --batch: invalid int value: 'abc' (see attnbench profile --help)"


def main_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.mark.parametrize(("entry", "message"), [
    ('{ name = "se", label = "none" }', "label 'none' names the plain backbone"),
    ('{ name = "se", backbones = [] }', "backbones must be a non-empty list of backbone names"),
])
def test_attention_entries_that_would_read_wrong_are_refused(project, tmp_path: Path, entry: str, message: str):
    text = TINY_SUITE.replace('attention = ["none", "se"]', f'attention = ["se", {entry}]')
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_suite(str(write(tmp_path / "entry.toml", text)), project)


def test_a_suite_that_is_a_folder_or_unknown(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    assert "is a folder; accepted: a suite name or a .toml file" in one_line_error(capsys, ["run", "--suite", "suites"])
    message = one_line_error(capsys, ["run", "--suite", "smok"])
    assert "unknown suite 'smok'" in message and "smoke" in message and "tiny" in message


def test_built_in_suites_are_found_from_any_folder(tmp_path: Path, monkeypatch):
    """An installed attnbench has its suites wherever it runs: no project, no suites folder."""
    monkeypatch.chdir(tmp_path)
    project = load_project()
    assert not project.suites_dir.exists()
    assert {"smoke", "cpu-latency", "gpu-latency", "gpu-check"} <= set(list_suites(project))
    assert load_suite("smoke", project).source == BUILT_IN_SUITES / "smoke.toml"


def test_a_project_suite_replaces_the_built_in_one_of_its_name(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    write(project_dir / "suites" / "smoke.toml", TINY_SUITE.replace('name = "tiny"', 'name = "my-smoke"'))
    project = load_project()
    assert load_suite("smoke", project).name == "my-smoke"
    assert main(["list", "suites"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line[:1].strip()}
    assert " suites " in rows["smoke"] and " suites " in rows["tiny"] and " built-in " in rows["gpu-check"]


def test_report_of_one_run_twice_is_refused(run_dir: Path, capsys):
    assert "both are run" in one_line_error(capsys, ["report", str(run_dir), str(run_dir)])


def test_max_case_seconds_must_leave_time_to_time_a_case(project, tmp_path: Path):
    text = TINY_SUITE.replace("max_seconds = 0.05", "max_seconds = 2\nmax_case_seconds = 1")
    with pytest.raises(ConfigError, match=r"max_case_seconds \(1\) must be > max_seconds \(2\)"):
        load_suite(str(write(tmp_path / "t.toml", text)), project)


@pytest.mark.parametrize("value, error", [("-0.5", "must be >= 0, got -0.5"), ('"long"', "expected float, got 'long'")])
def test_warmup_seconds_is_a_duration(project, tmp_path: Path, value: str, error: str):
    text = TINY_SUITE.replace("max_seconds = 0.05", f"max_seconds = 0.05\nwarmup_seconds = {value}")
    with pytest.raises(ConfigError, match=f"timing.warmup_seconds: {error}"):
        load_suite(str(write(tmp_path / "t.toml", text)), project)


def test_run_errors_start_with_the_error_not_a_blank_line(project_dir: Path):
    result = subprocess.run(
        [sys.executable, "-m", "attnbench", "run", "--suite", "tiny", "--attention", "cbam"],
        cwd=project_dir, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("attnbench: error: --attention 'cbam' is not in suite 'tiny'")
    assert len(result.stderr.splitlines()) == 1


LATE_CTRL_C = """
import atexit, os, signal, sys, time
from attnbench.cli import entry
atexit.register(lambda: (os.kill(os.getpid(), signal.SIGINT), time.sleep(5)))
sys.argv = ["attnbench", "list", "backbones"]
entry()
"""


def test_a_ctrl_c_while_the_process_exits_ends_it_at_once_without_a_trace():
    """A second Ctrl-C shortly after the first lands in Python's shutdown (atexit callbacks): it exits 130
    there, with nothing printed, instead of "Exception ignored in atexit callback" and a traceback."""
    result = subprocess.run(
        [sys.executable, "-c", LATE_CTRL_C], env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 130
    assert "resnet18" in result.stdout  # the command's output was flushed before the exit
    assert result.stderr == ""


def test_a_latency_run_narrowed_away_from_none_says_so_before_it_runs(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    assert main(["run", "--suite", "tiny", "--attention", "se"]) == 0
    err = capsys.readouterr().err
    assert "attnbench: warning: no `none` in this run (--attention left it out)" in err
    assert main(["run", "--suite", "tiny"]) == 0
    assert "no `none`" not in capsys.readouterr().err


def test_attention_filter_takes_keys_and_labels(project, tmp_path: Path):
    text = TINY_SUITE.replace('["none", "se"]', '["none", "se", { name = "se", label = "se-bias", bias = true }]')
    suite = load_suite(str(write(tmp_path / "s.toml", text)), project)
    assert [e.label for e in filter_suite(suite, attention=["none", "se"]).grid.attention] == ["none", "se", "se-bias"]
    assert [e.label for e in filter_suite(suite, attention=["se-bias"]).grid.attention] == ["se-bias"]


# --- issue 17.5: interrupted runs are reported against their whole grid ---------------------------------------


@pytest.mark.parametrize("kept", [1, 0])
def test_an_interrupted_run_is_reported_against_its_grid(run_dir: Path, kept: int):
    lines = (run_dir / "cases.csv").read_text().splitlines(keepends=True)
    (run_dir / "cases.csv").write_text("".join(lines[: 1 + kept]))
    meta = json.loads((run_dir / "meta.json").read_text())
    (run_dir / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    text = write_report(run_dir).read_text()
    assert f"| {kept} / 2 |" in text
    missing = ["resnet18 se batch 1 32 px"] if kept else ["resnet18 none batch 1 32 px", "resnet18 se batch 1 32 px"]
    assert f"{2 - kept} of the grid's 2 cases have no row: {', '.join(missing)}" in text
    assert "attention modules none, se;" in text  # the grid, not only what finished
