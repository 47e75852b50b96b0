"""Terminal tables at 80, 100 and 200 columns and piped: labels whole, columns dropped by priority, one
line per case, every axis that varies shown."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from attnbench.cli import main
from attnbench.gate import compare_runs
from attnbench.report.compare import comparison_table
from attnbench.report.summary import run_summary
from attnbench.terminal import Column, FittedTable
from attnbench.results import Run, read_run

RESULTS = Path(__file__).parent / "data" / "results"
SMOKE, OLD_SMOKE = RESULTS / "20260105T100000-a1b2c3", RESULTS / "20260104T100000-0f0f0f"
WIDTHS = (80, 100, 200)


def printed(renderable, width: int | None) -> list[str]:
    """What a console of `width` columns prints; None: a pipe (rich's own default width)."""
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable, crop=False)
    return console.file.getvalue().splitlines()


def test_columns_go_by_priority_and_labels_stay_whole():
    columns = [Column("name"), Column("value", "number", priority=1), Column("detail", "clip", priority=2, min_width=8),
               Column("extra", "number", priority=3)]
    table = FittedTable(columns)
    table.add_row("squeeze-and-excitation", "12.5", "a long explanation of what happened here", "7")
    wide = printed(table, 120)
    assert "extra" in wide[0] and "a long explanation of what happened here" in wide[2]
    middle = printed(table, 50)  # extra (priority 3) goes first, the detail is cut with an ellipsis
    assert "extra" not in middle[0] and "detail" in middle[0] and "…" in middle[2]
    assert "squeeze-and-excitation" in middle[2] and max(map(len, middle)) <= 50
    narrow = printed(table, 30)
    assert narrow[0].split() == ["name", "value"] and narrow[2].split() == ["squeeze-and-excitation", "12.5"]


def test_free_text_wraps_at_spaces_and_hyphens_never_inside_a_word():
    table = FittedTable([Column("key"), Column("paper", "text", min_width=8)])
    table.add_row("se", "Squeeze-and-Excitation Networks (CVPR 2018)")
    lines = [line.rstrip() for line in printed(table, 20)]
    cells = [line[4:].strip() for line in lines[2:]]
    assert cells[:2] == ["Squeeze-and-", "Excitation"]
    assert all(part in {"Squeeze-and-", "Excitation", "Networks", "(CVPR", "2018)", "Networks (CVPR", "(CVPR 2018)"}
               for part in cells if part)


def test_too_narrow_a_terminal_gets_one_line_per_row():
    table = FittedTable([Column("case"), Column("change", "number", priority=1), Column("p", "number", priority=2)],
                        title="a title that wraps as prose")
    table.add_row("resnet18/cbam/4/64/float32/eval/cpu", "+3.0%", "0.01")
    lines = printed(table, 20)
    assert "resnet18/cbam/4/64/float32/eval/cpu  +3.0%" in lines  # whole, never broken, the p-value left out
    assert "0.01" not in "\n".join(lines)


def _grid_run() -> Run:
    """The smoke fixture as a float32/bfloat16 x eval/train grid: four rows per case that differ only there."""
    run = read_run(SMOKE)
    cases = run.cases[run.cases["dtype"] == "float32"]
    grid = [cases.assign(dtype=dtype, mode=mode, case_id=cases["case_id"] + dtype + mode)
            for dtype in ("float32", "bfloat16") for mode in ("eval", "train")]
    skipped = cases.head(1).assign(dtype="float16", mode="eval", status="skipped", case_id="f16",
                                   error="float16 autocast is not supported on the CPU; use bfloat16 or float32",
                                   latency_ms_median=float("nan"))
    return Run(run.path, run.meta, pd.concat([*grid, skipped], ignore_index=True), run.samples)


@pytest.mark.parametrize("width", [*WIDTHS, None])
def test_run_summary_rows_say_what_they_are(width: int | None):
    lines = printed(run_summary(_grid_run()), width)
    assert max(map(len, lines)) <= (width or 80)
    assert lines[0] == "smoke, run 20260105T100000-a1b2c3: 64 px, cpu"  # the axes that do not vary
    rule = next(i for i, line in enumerate(lines) if line.startswith("──"))
    header = " ".join(lines[1:rule])  # a header may wrap over lines, at spaces
    for column in ("backbone", "attention", "batch", "dtype", "mode", "status", "latency"):
        assert column in header, column
    rows = [line for line in lines[rule:] if line.startswith("resnet")]
    assert len(rows) == len(set(rows)) == 4 * 12 + 1  # no two rows alike
    assert any(line.split()[:6] == ["resnet18", "se", "1", "bfloat16", "train", "ok"] for line in rows)
    skipped = next(line for line in rows if " float16 " in line)
    assert "skipped [3]" in skipped and "…" not in "\n".join(lines)
    assert "[3] float16 autocast is not supported on the CPU; use bfloat16 or float32" in lines


def test_run_summary_leaves_out_axes_that_do_not_vary():
    run = read_run(OLD_SMOKE)
    lines = printed(run_summary(run), 80)
    assert lines[0] == "smoke, run 20260104T100000-0f0f0f: resnet18, 64 px, float32, eval, cpu"
    assert lines[1].split()[:3] == ["attention", "batch", "status"]
    sharded = Run(run.path, {**run.meta, "shard": "1/2"}, run.cases, run.samples)
    assert printed(run_summary(sharded), 120)[0].startswith("smoke, run 20260104T100000-0f0f0f (shard 1/2 of the grid):")


def test_run_summary_explains_the_paired_overhead_and_shows_only_what_was_measured():
    run = read_run(SMOKE)
    timed = " ".join(printed(run_summary(run), 80))
    assert "vs none %" in timed and "(paired)" in timed and "ratio of the two medians" in timed
    counted_only = run.cases.assign(
        latency_ms_median=float("nan"), latency_overhead_pct=float("nan"), latency_ms_ci_low=float("nan"),
        latency_ms_ci_high=float("nan"),
    )
    lines = printed(run_summary(Run(run.path, run.meta, counted_only, run.samples.iloc[0:0])), 80)
    header = " ".join(lines[1:3])
    assert "MACs" in header and "latency" not in header and "vs none" not in header
    assert "(paired)" not in " ".join(lines)


@pytest.fixture(scope="module")
def comparison():
    return compare_runs(read_run(OLD_SMOKE), read_run(SMOKE))


@pytest.mark.parametrize("width", [*WIDTHS, None])
def test_compare_is_one_line_per_case(comparison, width: int | None):
    lines = printed(comparison_table(comparison), width)
    assert max(map(len, lines)) <= (width or 80)
    for case in comparison.cases:
        line = next(line for line in lines if f" {case.path} " in f" {line} ")
        assert line.split()[0] == case.verdict.value
    # relative to `none` (the default): se at batch 1 went from 1.158 to 1.1 x none
    assert next(line for line in lines if "resnet18/se/1/64/float32/eval/cpu" in line).split()[2:5] == [
        "-5.0%", "[0.937,", "0.964]"]
    # the reason of a failed case in full, whatever the width
    assert "resnet18/cbam/4/64/float32/eval/cpu: current error: RuntimeError: shapes cannot be multiplied" in \
        " ".join(line.strip() for line in lines)


def test_compare_shows_details_where_there_is_room(comparison):
    header = {width: printed(comparison_table(comparison), width)[1].split() for width in WIDTHS}
    assert header[80] == ["verdict", "case", "change", "CI", "of", "ratio"]
    assert "note" in header[100] and "p" not in header[100]
    assert {"baseline", "current", "p", "n", "gate", "note"} <= set(header[200])


def test_cli_tables_fit_80_columns_and_paths_are_never_wrapped(project_dir: Path, monkeypatch, capsys):
    monkeypatch.chdir(project_dir)
    monkeypatch.setenv("COLUMNS", "80")
    for what in ("attention", "backbones", "suites"):
        assert main(["list", what]) == 0
        out = capsys.readouterr().out
        assert max(len(line) for line in out.splitlines()) <= 80
        assert "…" not in out
    results = project_dir / "a-rather-long-results-folder-name-that-makes-the-path-longer-than-80-columns"
    for _ in range(2):
        assert main(["run", "--suite", "tiny", "--out", str(results)]) == 0
        out = capsys.readouterr().out.splitlines()
        run_dir = sorted(path for path in results.iterdir() if path.is_dir())[-1]
        assert f"run directory: {run_dir}" in out
    first, second = sorted(path for path in results.iterdir() if path.is_dir())
    assert main(["compare", str(first), str(second)]) in (0, 1)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("attnbench gate: ") and max(len(line) for line in out) <= 80


def test_the_progress_bar_draws_per_case_and_runs_no_thread_beside_the_timing():
    """rich's refresh thread would take the GIL ten times a second while calls are timed."""
    from attnbench.config import CaseSpec, attention_entry
    from attnbench.progress import progress_bar

    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    before = set(threading.enumerate())
    with progress_bar(console) as bar:
        assert set(threading.enumerate()) == before
        bar.case(3, 20, CaseSpec("resnet18", attention_entry("cbam"), 1, 64, "float32", "eval", "cpu"))
        assert "resnet18 cbam b1 r64" in console.file.getvalue()
        assert "3/20" in console.file.getvalue()
