"""Reports of the fixed, hand-made results in tests/data/results (no timing happens here).

The golden Markdown is regenerated with `ATTNBENCH_REGEN_GOLDEN=1 python -m pytest tests/test_report.py`;
review its diff before committing it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from attnbench.cli import main
from attnbench.errors import AttnbenchError, ResultsError
from attnbench.registry import Registry
from attnbench.report import costs, format, markdown, tables, write_report
from attnbench.results import read_run

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden" / "report.md"
SMOKE, OLD_SMOKE, COMPLEXITY = "20260105T100000-a1b2c3", "20260104T100000-0f0f0f", "20260106T090000-d4e5f6"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A writable copy of the fixed results root: reports are written beside the runs."""
    return Path(shutil.copytree(DATA / "results", tmp_path / "results"))


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Only a test section, so that sections other files register do not change the golden report."""
    registry: Registry = Registry("report section")
    registry.add("Test section", lambda run: f"cases in `{run.suite_name}`: {len(run.cases)}")
    registry.add("Empty section", lambda run: None)
    monkeypatch.setattr(markdown, "SECTIONS", registry)
    return registry


def test_golden_markdown(root: Path, sections: Registry) -> None:
    text = write_report(root).read_text()
    if os.environ.get("ATTNBENCH_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "report changed; regenerate with ATTNBENCH_REGEN_GOLDEN=1 and review the diff"


def test_registered_sections_render_under_their_title(root: Path, sections: Registry) -> None:
    text = write_report(root / SMOKE).read_text()
    assert "### Test section\n\ncases in `smoke`: 13" in text
    assert "Empty section" not in text


def test_figures_are_created_non_empty_and_linked(root: Path, sections: Registry) -> None:
    target = write_report(root / SMOKE)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", target.read_text())
    kinds = {"-cost-", "-batch-", "-flops-vs-latency"}  # one figure per question
    assert {kind for kind in kinds for link in links if kind in link} == kinds
    for link in links:
        assert not Path(link).is_absolute()
        png = target.parent / link
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert sorted(p.name for p in (root / SMOKE / "report-figures").iterdir()) == sorted(Path(l).name for l in links)


def test_report_without_timing_draws_no_timing_figures(root: Path, sections: Registry) -> None:
    text = write_report(root / COMPLEXITY).read_text()
    assert "### Figures" not in text and "### Latency" not in text
    assert "Cheapest in FLOPs on resnet50 at 224 px, float32, eval, cpu: `eca`" in text


def test_error_oom_and_skipped_rows_are_listed_with_reasons(root: Path, sections: Registry) -> None:
    text = write_report(root / SMOKE).read_text()
    problems = text[text.index("### Cases that did not finish"):]
    assert "| resnet18 | cbam | 4 | 64 | float32 | eval | cpu | error | RuntimeError: shapes cannot be multiplied" in problems
    assert "| oom | MemoryError: the host ran out of memory |" in problems
    assert "| skipped | float16 autocast is not supported on the CPU" in problems
    assert "- 1 error, 1 oom, 1 skipped: see *Cases that did not finish*" in text
    # The overhead table says why a cell is empty instead of leaving it blank.
    assert "| eca | 32 | +0.000274 | +0.00387 | +0.0833 | +4.17 | +5.00 | oom | oom | oom |" in text


def test_cheapest_module_is_compared_at_batch_sizes_every_module_finished(root: Path) -> None:
    frame = tables.with_overhead(read_run(root / SMOKE).cases)
    resnet18 = frame[frame["backbone"] == "resnet18"]
    column, cost, batches = tables.module_costs(resnet18)
    assert column == "latency_overhead_pct" and batches == [1]
    assert cost.index.tolist() == ["eca", "se", "cbam"]
    assert tables.module_order(resnet18) == ["none", "eca", "se", "cbam"]


def test_overhead_numbers(root: Path) -> None:
    table = tables.overhead(read_run(root / SMOKE).cases).set_index(["backbone", "attention", "batch_size"])
    se = table.loc[("resnet18", "se", 4)]
    assert se["latency_overhead_pct"] == pytest.approx(14.0)
    assert se["throughput_ratio"] == pytest.approx(140.351 / 160.0)
    assert se["params_attention"] == 89080
    assert se["bytes_overhead_pct"] == pytest.approx(100 * (192 / 180 - 1))
    assert table.loc[("resnet18", "none", 1), "latency_overhead_pct"] == 0
    shares = tables.shares(read_run(root / SMOKE).cases).set_index(["backbone", "attention", "batch_size"])
    assert shares.loc[("resnet18", "se", 1), "latency_share_pct"] == pytest.approx(100 * (1 - 9.0 / 9.9))


def test_a_setting_without_none_gets_no_hollow_share_table(root: Path) -> None:
    """Its overhead table stays (the parameters a module adds need no `none` row); its share table, every
    cell of which is relative to `none`, goes."""
    from attnbench.report.view import RunView
    from attnbench.results import Run

    run = read_run(root / SMOKE)
    assert costs.overhead_part(RunView(run)) and costs.shares_part(RunView(run))
    without = Run(run.path, run.meta, run.cases[run.cases["attention"] != "none"], run.samples)
    assert costs.shares_part(RunView(without)) == []
    assert "no finished `none` case, so no overheads there" in markdown.run_section(RunView(without), None, Path("."))


def test_throughput_ratio_and_latency_share_follow_the_paired_overhead() -> None:
    """Two independent medians can disagree with the rounds' ratios; every latency-derived column of the
    report follows the paired overhead, so the overhead, share and throughput tables tell one story."""
    key = {"backbone": "resnet18", "batch_size": 2, "resolution": 64, "dtype": "float32", "mode": "eval",
           "device": "cpu", "channels_last": False, "runtime": "eager", "status": "ok", "noisy": False}
    cases = pd.DataFrame([
        {**key, "attention": "none", "attention_key": "none", "options": "", "placement": "default",
         "latency_ms_median": 17.9, "throughput_ips": 2 / 0.0179},
        {**key, "attention": "se-bias", "attention_key": "se", "options": "bias=True", "placement": "default",
         "latency_ms_median": 20.9, "throughput_ips": 2 / 0.0209,
         "latency_overhead_pct": 7.19, "latency_overhead_ci_low_pct": 6.18, "latency_overhead_ci_high_pct": 8.08},
    ])
    row = tables.overhead(cases).set_index("attention").loc["se-bias"]
    assert row["latency_overhead_pct"] == pytest.approx(7.19)
    assert row["throughput_ratio"] == pytest.approx(1 / 1.0719)  # not 17.9 / 20.9 = 0.856
    share = tables.shares(cases).set_index("attention").loc["se-bias", "latency_share_pct"]
    assert share == pytest.approx(100 * (1 - 1 / 1.0719))  # not 1 - 17.9 / 20.9 = 14.4%


def test_ranking_only_where_intervals_separate() -> None:
    frame = pd.DataFrame({
        "attention": ["none", "a", "b", "c"], "batch_size": [1, 1, 1, 1], "latency_overhead_pct": [0.0, 5.0, 6.0, 12.0],
        "latency_overhead_ci_low_pct": [None, 4.0, 5.5, 11.0], "latency_overhead_ci_high_pct": [None, 6.0, 6.5, 13.0],
    })
    sentence = costs.cheapest_sentence(frame, "net")
    assert sentence.startswith("**Cheapest in latency on net: `a`**, +5.00% over `none` at batch size 1")
    assert sentence.endswith("Ranked where their 95% intervals separate: `a` ≈ `b` < `c`.")
    frame.loc[2, ["latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct"]] = [6.2, 6.5]
    assert "`a` < `b` < `c`" in costs.cheapest_sentence(frame, "net")


def test_runs_timed_before_pairing_rank_by_their_median_intervals() -> None:
    frame = pd.DataFrame({
        "attention": ["none", "a", "b"], "batch_size": [1, 1, 1], "latency_overhead_pct": [0.0, 5.0, 6.0],
        "latency_ms_ci_low": [9.0, 9.4, 9.5], "latency_ms_ci_high": [9.1, 9.6, 9.7],
    })
    assert "`a` ≈ `b`" in costs.cheapest_sentence(frame, "net")
    frame.loc[2, ["latency_ms_ci_low", "latency_ms_ci_high"]] = [9.8, 9.9]
    assert "`a` < `b`" in costs.cheapest_sentence(frame, "net")


def test_results_root_reports_the_latest_run_of_each_suite(root: Path, sections: Registry) -> None:
    text = write_report(root).read_text()
    assert re.findall(r"^## Suite `(\w+)`, run `(\S+)`", text, re.M) == [("complexity", COMPLEXITY), ("smoke", SMOKE)]


def test_all_and_run_choose_runs_of_a_root(root: Path, sections: Registry) -> None:
    every = write_report(root, all_runs=True).read_text()
    assert re.findall(r"^## Suite `\w+`, run `(\S+)`", every, re.M) == [COMPLEXITY, OLD_SMOKE, SMOKE]
    one = write_report(root, root / "one.md", run_id="20260104").read_text()
    assert re.findall(r"^## Suite `\w+`, run `(\S+)`", one, re.M) == [OLD_SMOKE]


def test_csv_format_writes_one_tidy_file_per_table(root: Path) -> None:
    folder = write_report(root, fmt="csv")
    assert folder == root / "report-tables"
    assert {p.name for p in folder.iterdir()} == {f"{name}.csv" for name in tables.TABLES.names()}
    overhead = pd.read_csv(folder / "overhead.csv")
    row = overhead[(overhead["run_id"] == SMOKE) & (overhead["attention"] == "se") & (overhead["batch_size"] == 1)
                   & (overhead["backbone"] == "resnet18")]
    assert row["latency_overhead_pct"].item() == pytest.approx(10.0)
    problems = pd.read_csv(folder / "problems.csv")
    assert sorted(problems["status"]) == ["error", "error", "oom", "skipped"]


def test_json_format_holds_runs_and_tables(root: Path) -> None:
    document = json.loads(write_report(root, fmt="json").read_text())
    assert [run["run_id"] for run in document["runs"]] == [COMPLEXITY, SMOKE]
    assert set(document["tables"]) == set(tables.TABLES.names())
    latency = [r for r in document["tables"]["latency"] if r["backbone"] == "resnet50" and r["attention"] == "se"]
    assert [r["latency_ms_median"] for r in latency] == [20.1, 66.0]
    assert latency[0]["noisy"] is True


def test_two_runs_are_compared_by_the_gates_engine(root: Path) -> None:
    target = write_report([root / OLD_SMOKE, root / SMOKE])
    assert target == root / SMOKE / f"compare-{OLD_SMOKE}.md"
    text = target.read_text()
    assert "## attnbench gate: FAIL (1 failed, 8 new, 2 unchanged, 2 reference)" in text
    assert "| failed | resnet18/cbam/4/64/float32/eval/cpu |" in text
    # Relative to `none`: se at batch 1 is 1.158 x none in A, 1.1 x none in B (none itself 5% faster in B).
    assert "| unchanged | resnet18/se/1/64/float32/eval/cpu | 1.158 | 1.1 | -5.0% |" in text
    assert "`none` median -5.3% to +0.0% over 2 setting(s)" in text
    table = json.loads(write_report([root / OLD_SMOKE, root / SMOKE], fmt="json").read_text())["tables"]["comparison"]
    verdicts = {(r["attention"], r["batch_size"]): r["verdict"] for r in table
                if r["dtype"] == "float32" and r["backbone"] == "resnet18"}
    assert verdicts[("se", 4)] == "unchanged" and verdicts[("eca", 1)] == "new"
    ratio = next(r["ratio"] for r in table if (r["backbone"], r["attention"], r["batch_size"]) == ("resnet18", "se", 4))
    assert ratio == pytest.approx((28.5 / 25.0) / (28.4 / 25.0), rel=3e-3)
    comparison = pd.read_csv(write_report([root / OLD_SMOKE, root / SMOKE], fmt="csv") / "comparison.csv")
    assert list(comparison.columns[:4]) == ["suite", "run_id", "baseline_run_id", "backbone"]
    assert set(comparison["run_id"]) == {SMOKE} and set(comparison["baseline_run_id"]) == {OLD_SMOKE}


def test_two_runs_without_latency_say_so(root: Path) -> None:
    again = Path(shutil.copytree(root / COMPLEXITY, root.parent / "again" / "20260107T090000-000000"))
    meta = json.loads((again / "meta.json").read_text())
    (again / "meta.json").write_text(json.dumps({**meta, "run_id": again.name}))
    text = write_report([root / COMPLEXITY, again]).read_text()
    assert "No case can be compared:" in text and "has no latency_ms samples" in text


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda root: [root / "missing"], "does not exist"),
        (lambda root: [root.parent / "empty"], "holds no run directories"),
        (lambda root: [root, root / SMOKE], "is not a run directory"),
        (lambda root: [root / SMOKE, root / OLD_SMOKE, root / COMPLEXITY], "got 3"),
    ],
)
def test_bad_paths_are_one_line_errors(root: Path, make_args, message: str) -> None:
    (root.parent / "empty").mkdir()
    with pytest.raises(AttnbenchError, match=message):
        write_report(make_args(root))


def test_bad_options_are_one_line_errors(root: Path) -> None:
    with pytest.raises(ResultsError, match="matches several runs"):
        write_report(root, run_id="2026")
    with pytest.raises(ResultsError, match="matches no run.*accepted: 20260104T100000-0f0f0f"):
        write_report(root, run_id="1999")
    with pytest.raises(ResultsError, match="comparison takes two run directories"):
        write_report([root / OLD_SMOKE, root / SMOKE], all_runs=True)
    with pytest.raises(ResultsError, match="meta.json is a file, not a folder"):
        write_report(root, root / SMOKE / "meta.json" / "report.md")
    with pytest.raises(AttnbenchError, match="unknown report format 'html'"):
        write_report(root, fmt="html")


def test_cli_report_and_its_errors(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(root / SMOKE), "--format", "csv", "--out", str(root / "tables")]) == 0
    assert (root / "tables" / "overhead.csv").is_file()
    assert main(["report", str(root / "missing")]) == 2
    assert "attnbench: error: results path" in capsys.readouterr().err


def test_number_formatting() -> None:
    assert [format.sig3(v) for v in (9.0, 0.2, 1700.4, 11689512, -0.0123456, 0)] == [
        "9.00", "0.200", "1,700", "11,700,000", "-0.0123", "0"]
    assert [format.si(v) for v in (11689512, 4111514624, 32, 89080)] == ["11.7 M", "4.11 G", "32", "89.1 k"]
    assert format.signed(5) == "+5.00" and format.signed(-1.234) == "-1.23" and format.signed(0) == "0"
    assert format.cell("a | b\nc") == "a \\| b c"


def test_group_without_baseline_is_warned_and_still_listed(root: Path, sections: Registry) -> None:
    cases = root / SMOKE / "cases.csv"
    lines = cases.read_text().splitlines()
    cases.write_text("\n".join(line for line in lines if not line.startswith("r50none")) + "\n")
    text = write_report(root / SMOKE).read_text()
    assert "- resnet50 at 64 px, float32, eval, cpu: no finished `none` case, so no overheads there" in text
    assert "| se | 2.53 M |  |" in text  # the module's row stays, its overheads empty


def test_run_with_no_cases(root: Path, sections: Registry) -> None:
    cases = root / SMOKE / "cases.csv"
    cases.write_text(cases.read_text().splitlines()[0] + "\n")
    text = write_report(root / SMOKE).read_text()
    assert text.endswith("No case was measured.\n") and "| `smoke` |" in text


def test_overhead_cells_carry_their_interval_and_a_missed_target() -> None:
    case = pd.Series({"latency_overhead_pct": 10.345, "latency_overhead_ci_low_pct": 9.1,
                      "latency_overhead_ci_high_pct": 11.52, "precision_met": False})
    assert costs.overhead_cell(case) == "+10.3 (9.10 to 11.5) *"
    assert costs.overhead_cell(case.drop("precision_met")) == "+10.3 (9.10 to 11.5)"
    assert costs.overhead_cell(pd.Series({"latency_overhead_pct": 5.0})) == "+5.00"
    assert costs.overhead_cell(pd.Series({"latency_overhead_pct": float("nan")})) is None


@pytest.mark.parametrize("timing, said", [
    ({"warmup": 3, "warmup_seconds": 0.25}, "after up to 3 warm-up calls (fewer once they took 0.25 s),"),
    ({"warmup": 3}, "after 3 warm-up calls,"),  # a run from before warmup_seconds
    ({"warmup": 1, "warmup_seconds": 0.25}, "after 1 warm-up call,"),
])
def test_the_report_says_how_many_warm_up_calls_ran(timing, said):
    from attnbench.report.header import measured_lines
    from attnbench.report.view import RunView
    from attnbench.results import CASE_COLUMNS, SAMPLE_COLUMNS, Run

    case = {"case_id": "a", "backbone": "resnet18", "attention": "none", "batch_size": 1, "resolution": 64,
            "dtype": "float32", "mode": "eval", "device": "cpu", "status": "ok", "repeats": 20}
    meta = {"status": "complete", "suite": {"metrics": ["latency"], "timing": {**timing, "max_seconds": 1.0}}}
    cases, samples = pd.DataFrame([case]).reindex(columns=CASE_COLUMNS), pd.DataFrame(columns=SAMPLE_COLUMNS)
    assert said in measured_lines(RunView(Run(Path("."), meta, cases, samples)))[0]


def _timed_run(cases: list[dict], samples: list[dict], meta: dict):
    from attnbench.report.view import RunView
    from attnbench.results import CASE_COLUMNS, SAMPLE_COLUMNS, Run

    setting = {"backbone": "resnet18", "batch_size": 1, "resolution": 64, "dtype": "float32", "mode": "eval",
               "device": "cpu", "status": "ok", "latency_ms_median": 50.0, "repeats": 20}
    frame = pd.DataFrame([{**setting, **case} for case in cases]).reindex(columns=CASE_COLUMNS)
    return RunView(Run(Path("."), meta, frame, pd.DataFrame(samples).reindex(columns=SAMPLE_COLUMNS)))


def _calls(case_id: str, count: int, latency_ms=lambda call: 50.0) -> list[dict]:
    return [{"case_id": case_id, "repeat": call, "round": call, "latency_ms": latency_ms(call), "wall_ms": 50.0}
            for call in range(count)]


def test_a_missed_precision_target_says_what_budget_would_meet_it():
    from attnbench.report.header import timing_sentence

    wide = {"latency_overhead_pct": 10.0, "latency_overhead_ci_low_pct": 6.0, "latency_overhead_ci_high_pct": 14.0}
    narrow = {"latency_overhead_pct": 5.0, "latency_overhead_ci_low_pct": 3.0, "latency_overhead_ci_high_pct": 7.0}
    cases = [
        {"case_id": "n1", "attention": "none", "precision_met": True},
        {"case_id": "s1", "attention": "se", "precision_met": False, **wide},
        {"case_id": "n2", "attention": "none", "batch_size": 2, "precision_met": True},
        {"case_id": "s2", "attention": "se", "batch_size": 2, "precision_met": False, **narrow},
    ]
    # 20 calls of 50 ms per case: 1 s of calls each; ±4 points at a target of ±1 needs 16x the calls.
    samples = [call for case in ("n1", "s1", "n2", "s2") for call in _calls(case, 20)]
    meta = {"suite": {"timing": {"precision": 1.0, "max_seconds": 1.0}}}
    said = timing_sentence(_timed_run(cases, samples, meta))
    assert "0 of 2 cases reached it" not in said and "2 of 4 cases reached it." in said
    assert "with `max_seconds` of about 16 s" in said
    assert "the widest, ±4.0 points (resnet18, se, batch 1), came from 1 s of calls per case" in said

    for case in cases:  # every interval within the target: nothing to add
        case.update(precision_met=True, **narrow if case["attention"] == "se" else {})
    meta["suite"]["timing"]["precision"] = 2.0
    assert "max_seconds` of about" not in timing_sentence(_timed_run(cases, samples, meta))


def test_a_group_without_none_is_budgeted_on_its_medians():
    from attnbench.report.header import timing_sentence
    from attnbench.measure.stats import relative_half_width

    spread = _calls("e1", 30, latency_ms=lambda call: 40.0 + call)  # 40..69 ms: a wide median interval
    width = relative_half_width([40.0 + call for call in range(30)])
    meta = {"suite": {"timing": {"precision": 1.0, "max_seconds": 1.0}}}
    said = timing_sentence(_timed_run([{"case_id": "e1", "attention": "eca", "precision_met": False}], spread, meta))
    assert f"the widest, ±{width:.1f} points (resnet18, eca, batch 1), came from 1.5 s of calls per case" in said
    assert f"about {1.5 * width ** 2:.0f} s" in said


@pytest.mark.parametrize("executor, said", [
    (None, "The timed calls took 12.0 s of the run's 20 s (60%); the rest went"),
    ({"kind": "local", "workers": 2}, "The timed calls took 12.0 s of the run's 20 s on 2 workers (30% of their time)"),
    ({"kind": "slurm", "folder": "x"}, "The timed calls took 12.0 s over the job array's tasks."),
])
def test_the_share_of_time_in_timed_calls_counts_every_worker(executor, said):
    from attnbench.report.header import timing_sentence

    meta = {"suite": {"timing": {"max_seconds": 1.0}}, "start_time": "2026-11-30T10:00:00+00:00",
            "end_time": "2026-11-30T10:00:20+00:00", **({"executor": executor} if executor else {})}
    samples = _calls("n1", 120) + _calls("s1", 120)  # 240 calls of 50 ms: 12 s
    run = _timed_run([{"case_id": "n1", "attention": "none"}, {"case_id": "s1", "attention": "se"}], samples, meta)
    assert said in timing_sentence(run)
