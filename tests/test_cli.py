"""The CLI end to end on a tiny grid, in a throwaway project folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.results import find_runs, read_run
from tests.conftest import write


@pytest.fixture
def in_project(project_dir: Path, monkeypatch) -> Path:
    monkeypatch.chdir(project_dir)
    return project_dir


def test_run_then_report(in_project: Path, capsys):
    assert main(["run", "--suite", "tiny"]) == 0
    runs = find_runs(in_project / "results")
    assert len(runs) == 1
    run = read_run(runs[0])
    assert run.meta["status"] == "complete"
    assert run.meta["suite"]["name"] == "tiny"
    assert run.meta["threads"] == 1
    cases = run.cases.set_index("attention")
    assert cases["status"].tolist() == ["ok", "ok"]
    assert cases.loc["none", "params_attention"] == 0
    assert cases.loc["se", "params_attention"] == 2 * sum(c * c // 16 for c in (64, 64, 128, 128, 256, 256, 512, 512))
    assert cases.loc["se", "macs"] > cases.loc["none", "macs"] > 0
    for case_id, repeats in zip(run.cases["case_id"], run.cases["repeats"]):
        assert len(run.samples_of(case_id)) == repeats >= 3
    assert str(runs[0]) in capsys.readouterr().out.replace("\n", "")

    assert main(["report", "results"]) == 0
    report = (in_project / "results" / "report.md").read_text()
    assert "## Suite `tiny`" in report and "| resnet18 | se |" in report


def test_list_commands(in_project: Path, capsys):
    for what in ("attention", "backbones", "suites"):
        assert main(["list", what]) == 0
    out = capsys.readouterr().out
    assert "Squeeze" in out and "resnet18" in out and "tiny" in out


def test_bad_suite_is_one_line_and_exit_2(in_project: Path, capsys):
    write(in_project / "bad.toml", "[grid]\nbackbones = ['resnet18']\nattention = ['sr']\nbatch_sizes=[1]\nresolutions=[32]\n")
    assert main(["run", "--suite", "bad.toml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnbench: error: bad.toml: grid.attention: unknown attention 'sr'")
    assert "\n" not in err
    assert not (in_project / "results").exists()


def test_unknown_suite_and_missing_report_path(in_project: Path, capsys):
    assert main(["run", "--suite", "smok"]) == 2
    assert main(["report", "nowhere"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "attnbench: error: unknown suite 'smok': did you mean 'smoke'? accepted: compile, complexity, cpu-latency, "
        "deploy-cpu, deploy-gpu, gpu-check, gpu-latency, gpu-train, native, native-gpu, paper-tables, smoke, tiny",
        "attnbench: error: results path nowhere does not exist",
    ]


def test_python_dash_m_entry_point(in_project: Path):
    result = subprocess.run(
        [sys.executable, "-m", "attnbench", "run", "--suite", "nope"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("attnbench: error: unknown suite 'nope'")
    assert "Traceback" not in result.stderr


def test_the_command_line_parses_without_importing_torch():
    """torch, torchvision and the report package take seconds to import: `--help` and a mistyped option
    must not wait for them; each command imports what it needs when it runs."""
    probe = (
        "import sys; from attnbench.cli import build_parser; build_parser(); "
        "print(sorted({'torch', 'torchvision', 'matplotlib', 'scipy.stats'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_run_does_not_import_the_report_writer():
    """`run` prints its closing table from the report package; matplotlib and the Markdown writer (half a
    second) load only when a report is written."""
    probe = (
        "import sys; import attnbench.cli.run, attnbench.runner, attnbench.report.summary; "
        "print(sorted({'matplotlib', 'attnbench.report.writer'} & set(sys.modules))); "
        "from attnbench.report import write_report, FORMATS, ReportOptions; "
        "print(sorted({'matplotlib', 'attnbench.report.writer'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "['attnbench.report.writer', 'matplotlib']"]
