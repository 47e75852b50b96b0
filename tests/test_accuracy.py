"""Published accuracies against measured cost: the shipped table, a lab's own CSV, the join, the Pareto front,
and the "Accuracy against cost" section and figure on fixed runs.

The golden sections are regenerated with `ATTNBENCH_REGEN_GOLDEN=1 python -m pytest tests/test_accuracy.py`;
review their diff before committing them.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from attnbench.accuracy import (
    COLUMNS,
    PUBLISHED_CSV,
    REQUIRED,
    accuracy_rows,
    case_configuration,
    matching,
    parse_options,
    parse_rows,
    published_rows,
)
from attnbench.cli import main
from attnbench.config import load_project
from attnbench.errors import ConfigError
from attnbench.modules import ATTENTION, BASELINE
from attnbench.report import ReportOptions, write_report
from attnbench.report.accuracy_section import accuracy_against_cost, choices, overhead_interval, pareto_front
from attnbench.report.view import RunView
from attnbench.results import read_run
from tests.conftest import write

DATA = Path(__file__).parent / "data"
SMOKE = DATA / "results" / "20260105T100000-a1b2c3"
COMPLEXITY = DATA / "results" / "20260106T090000-d4e5f6"
CPU = DATA / "accuracy" / "20260107T090000-ca11ed"
"""Hand-made, shaped like the cpu-latency suite: ResNet-50 and MobileNetV2, batch 1 and 8, CBAM oom at 8."""
SHIPPED = Path(__file__).parents[1] / "attnbench" / "data" / PUBLISHED_CSV
HEADER = ",".join(COLUMNS)

LAB_CSV = """\
backbone,attention,options,model,top1_pct,baseline_model,baseline_top1_pct,epochs,source
mobilenet_v2,se,,MobileNetV2 + SE (ours),72.1,MobileNetV2 (ours),71.9,90,our lab
resnet50,eca,,ECA-ResNet-50 (ours),76.6,ResNet-50 (ours),76.1,90,our lab
"""


def golden(name: str, text: str) -> None:
    path = DATA / "golden" / name
    if os.environ.get("ATTNBENCH_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; regenerate with ATTNBENCH_REGEN_GOLDEN=1 and review the diff"


def lab_project(tmp_path: Path, csv_text: str | None = LAB_CSV, key: str = 'accuracy_csv = "lab/accuracy.csv"'):
    write(tmp_path / "attnbench.toml", f'results_dir = "results"\n{key}\n')
    if csv_text is not None:
        write(tmp_path / "lab" / "accuracy.csv", csv_text)
    return load_project(tmp_path / "attnbench.toml")


# ---------------------------------------------------------------- the shipped table


def test_shipped_table_has_the_schema_columns_and_every_row_parses():
    with SHIPPED.open() as handle:
        assert next(csv.reader(handle)) == list(COLUMNS)
    rows = published_rows()
    assert len(rows) == sum(1 for _ in SHIPPED.open()) - 1
    for row in rows:
        assert isinstance(row.top1_pct, float) and isinstance(row.baseline_top1_pct, float)
        assert row.epochs is None or isinstance(row.epochs, int)
        assert not row.lab


def test_every_shipped_row_names_its_source_by_address_pinned_to_a_commit():
    for row in published_rows():
        assert row.source and row.where and row.url.startswith("https://"), row
        if row.url.startswith("https://github.com/"):
            assert re.search(r"/blob/[0-9a-f]{40}/", row.url), row.url


def test_baselines_come_from_the_same_source_and_table():
    """Rows of one table that name the same baseline give it the same top-1: one baseline per source table."""
    baselines: dict[tuple[str, str], set[float]] = {}
    for row in published_rows():
        baselines.setdefault((row.url, row.baseline_model), set()).add(row.baseline_top1_pct)
    assert all(len(values) == 1 for values in baselines.values()), baselines
    for row in published_rows():
        if row.attention == BASELINE:  # torchvision's weights: the plain backbone is its own baseline
            assert row.model == row.baseline_model and row.top1_pct == row.baseline_top1_pct


def test_shipped_numbers_are_the_sources_numbers():
    by_model = {(row.source, row.model): row for row in published_rows()}
    sknet = {m: by_model[("SKNet", m)].top1_pct for m in
             ("ResNeXt-50 + BAM", "ResNeXt-50 + CBAM", "SENet-50 (SE-ResNeXt-50)", "SKNet-50")}
    assert sknet == {"ResNeXt-50 + BAM": 78.30, "ResNeXt-50 + CBAM": 78.60, "SENet-50 (SE-ResNeXt-50)": 78.88,
                     "SKNet-50": 79.21}
    assert {by_model[("SKNet", m)].baseline_top1_pct for m in sknet} == {77.77}
    ca = {m: by_model[("CA", f"MobileNetV2 + {m}")].top1_pct for m in ("SE", "CBAM", "CA")}
    assert ca == {"SE": 73.5, "CBAM": 73.6, "CA": 74.3}
    assert by_model[("CA", "MobileNetV2 + CA")].baseline_top1_pct == 72.3
    assert by_model[("torchvision", "ResNet-50 IMAGENET1K_V1")].top1_pct == 76.130
    assert by_model[("SKNet", "SENet-50 (SE-ResNeXt-50)")].label == "se(bias=True)"


def test_the_sections_timm_caveat_holds_in_the_table():
    """With one recipe for both, SE-ResNet-50 is below ResNet-50 under two of three timm recipes."""
    timm = [row for row in published_rows() if row.source == "timm" and row.attention == "se"]
    assert len(timm) == 3 and sorted(row.gain_pp < 0 for row in timm) == [False, True, True]
    assert [row.gain_text() for row in timm] == ["-0.370", "+0.274", "-1.016"]


def test_modules_with_a_published_gain_and_without():
    found = {row.attention for row in published_rows()} - {BASELINE}
    assert found == {"se", "cbam", "bam", "sk", "coord", "gct"}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = re.search(r"No published result with a same-source baseline was found for (.*?)\.", readme, re.S).group(1)
    assert set(re.findall(r"`(\w+)`", listed)) == set(ATTENTION.names()) - found


# ---------------------------------------------------------------- the join


def test_options_read_as_suite_files_and_cases_csv_write_them():
    assert parse_options("bias=true;reduction=8") == {"bias": True, "reduction": 8}
    assert parse_options("bias=True; k_size='resnet50'") == {"bias": True, "k_size": "resnet50"}
    assert parse_options("k_size=resnet50") == {"k_size": "resnet50"}
    assert parse_options("") == {}


def test_case_configuration_uses_key_options_and_placement_not_the_label():
    assert case_configuration("se", "bias=True", "", "my-se") == "se(bias=True)"
    assert case_configuration("se", "bias=False;reduction=16", math.nan, "se") == "se"  # defaults written out
    assert case_configuration("coord", math.nan, "expanded", "coord") == "coord"  # coord's own placement
    assert case_configuration("se", "", "stage_end", "se-late") == "se @stage_end"
    assert case_configuration("plugin_gate", "", "", "plugin_gate(x=1)") == "plugin_gate(x=1)"


def test_join_prefers_the_same_configuration_then_the_same_key():
    rows = published_rows()
    exact, is_exact = matching(rows, "resnet50", "se", "se(bias=True)")
    assert is_exact and [row.source for row in exact] == ["timm", "timm", "timm", "mmpretrain"]
    by_key, is_exact = matching(rows, "resnet50", "se", "se")
    assert not is_exact and by_key == exact
    moved, is_exact = matching(rows, "mobilenet_v2", "coord", "coord @block")
    assert not is_exact and moved[0].model == "MobileNetV2 + CA"
    assert matching(rows, "resnet18", "se", "se") == ([], False)


def test_lab_rows_come_first_and_win_for_the_same_pair(tmp_path: Path):
    rows = accuracy_rows(lab_project(tmp_path))
    assert [row.lab for row in rows[:2]] == [True, True] and not rows[2].lab
    assert len(rows) == len(published_rows()) + 2
    found, exact = matching(rows, "mobilenet_v2", "se", "se")
    assert exact and found[0].source == "our lab" and found[0].gain_text() == "+0.2"
    assert found[1].source == "CA"
    assert accuracy_rows(load_project(tmp_path / "attnbench.toml")) == rows  # read again, the same
    assert load_project(tmp_path / "attnbench.toml").accuracy_csv == tmp_path.resolve() / "lab" / "accuracy.csv"
    assert lab_project(tmp_path / "other", key="").accuracy_csv is None


# ---------------------------------------------------------------- a lab's malformed CSV


def parse(text: str):
    return parse_rows(text, Path("lab.csv"), lab=True)


GOOD = "mobilenet_v2,se,,A,72.1,B,71.9,lab"
SHORT_HEADER = "backbone,attention,options,model,top1_pct,baseline_model,baseline_top1_pct,source"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{SHORT_HEADER}\nmobilenet_v2,se,,A,high,B,71.9,lab\n",
         "lab.csv: line 2, column top1_pct: 'high' is not a number; accepted: ImageNet-1k top-1 accuracy in %"),
        (f"{SHORT_HEADER}\n{GOOD}\nmobilenet_v2,se,,A,72.1,B,0.719e3,lab\n",
         "lab.csv: line 3, column baseline_top1_pct: 0.719e3 is out of range; accepted: a percentage in (0, 100]"),
        (f"{SHORT_HEADER}\nmobilenet_v2,sse,,A,72.1,B,71.9,lab\n",
         "lab.csv: line 2, column attention: unknown attention 'sse': did you mean 'scse', 'se'?"),
        (f"{SHORT_HEADER}\nresnet5,se,,A,72.1,B,71.9,lab\n",
         "lab.csv: line 2, column backbone: unknown backbone 'resnet5': did you mean"),
        (f"{SHORT_HEADER}\nmobilenet_v2,se,ratio=8,A,72.1,B,71.9,lab\n",
         "lab.csv: line 2, column options: attention 'se' has no option 'ratio'"),
        (f"{SHORT_HEADER}\nmobilenet_v2,se,reduction,A,72.1,B,71.9,lab\n",
         "lab.csv: line 2, column options: 'reduction' is not KEY=VALUE; accepted: e.g. bias=true;reduction=8"),
        (f"{SHORT_HEADER}\nmobilenet_v2,se,,,72.1,B,71.9,lab\n",
         "lab.csv: line 2, column model: is empty; accepted: the model's name as the source prints it"),
        (f"{SHORT_HEADER}\nmobilenet_v2,none,,A,72.1,A,71.9,lab\n",
         "lab.csv: line 2, column top1_pct: a none row is the plain backbone, its own baseline; accepted: top1_pct "
         "equal to baseline_top1_pct (71.9)"),
        (f"{SHORT_HEADER}\n{GOOD},extra\n", "lab.csv: line 2, column source: 9 fields, the header has 8"),
        (f"{SHORT_HEADER},epochs\n{GOOD},ninety\n",
         "lab.csv: line 2, column epochs: 'ninety' is not a positive integer; accepted: training epochs"),
        (f"{SHORT_HEADER},url\n{GOOD},lab wiki\n",
         "lab.csv: line 2, column url: 'lab wiki' is not an address; accepted: an http(s) URL, or empty"),
        (f"{SHORT_HEADER},placement\n{GOOD},nowhere\n", "lab.csv: line 2, column placement: "),
        (f"{SHORT_HEADER},top1\n{GOOD},72\n",
         "lab.csv: line 1: unknown column 'top1' (did you mean 'top1_pct'?); accepted columns: backbone, attention,"),
        (SHORT_HEADER.replace(",baseline_top1_pct", "") + "\nmobilenet_v2,se,,A,72.1,B,lab\n",
         "lab.csv: line 1: missing column 'baseline_top1_pct'; accepted columns: backbone,"),
    ],
)
def test_malformed_lab_csv_is_one_line_naming_file_line_and_column(text: str, message: str):
    with pytest.raises(ConfigError) as error:
        parse(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_lab_csv_needs_only_the_required_columns():
    (row,) = parse(f"{SHORT_HEADER}\n{GOOD}\n")
    assert set(REQUIRED) <= set(SHORT_HEADER.split(",")) and row.epochs is None and row.url == ""


def test_the_readme_lab_example_parses():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = parse(re.search(r"```csv\n(.*?)```", readme, re.S).group(1))
    assert [(row.backbone, row.label, row.gain_text()) for row in rows] == [
        ("mobilenet_v2", "eca", "+0.5"), ("resnet50", "se(reduction=8)", "+0.8")]


def test_missing_lab_csv_is_a_one_line_error_exit_2(tmp_path: Path, monkeypatch, capsys):
    project = lab_project(tmp_path, csv_text=None)
    with pytest.raises(ConfigError, match=r"attnbench.toml: accuracy_csv: .*lab/accuracy.csv does not exist; "
                                          r"accepted: a CSV file with the columns backbone, attention, options"):
        accuracy_rows(project)
    monkeypatch.chdir(tmp_path)
    assert main(["list", "attention"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnbench: error: ") and "does not exist" in err and err.count("\n") == 1


def test_accuracy_csv_must_be_a_string(tmp_path: Path):
    with pytest.raises(ConfigError, match="accuracy_csv"):
        lab_project(tmp_path, key="accuracy_csv = 3")


# ---------------------------------------------------------------- the front


def test_pareto_front_on_a_hand_made_example():
    # none, a cheap small gain, a dominated one (dearer, smaller gain), a dear large gain, a tie with it,
    # a free loss (cheaper than none, worse), one without a cost.
    costs = [0.0, 5.0, 9.0, 20.0, 20.0, -1.0, math.nan]
    gains = [0.0, 1.0, 0.5, 2.0, 2.0, -0.5, 3.0]
    assert pareto_front(costs, gains) == [True, True, False, True, True, True, False]
    assert pareto_front([0.0, 4.0], [0.0, -0.4]) == [True, False]  # a module that costs and loses


def test_overhead_interval_spans_both_intervals():
    case = pd.Series({"latency_ms_ci_low": 11.0, "latency_ms_ci_high": 12.0})
    base = pd.Series({"latency_ms_ci_low": 9.0, "latency_ms_ci_high": 10.0})
    low, high = overhead_interval(case, base)
    assert low == pytest.approx(10.0) and high == pytest.approx(100 * (12 / 9 - 1))
    assert overhead_interval(case, pd.Series({"latency_ms_ci_low": None, "latency_ms_ci_high": 10.0})) is None


# ---------------------------------------------------------------- the section and the figure


def test_section_on_the_golden_smoke_run():
    text = accuracy_against_cost(RunView(read_run(SMOKE)))
    golden("accuracy_smoke.md", text)
    assert "| se ≈ | -0.370 |" in text and "published as `se(bias=True)`" in text
    assert text.endswith("No module measured here has a published gain in: resnet18 at 64 px, float32, eval, cpu "
                         "(`se`, `cbam`, `eca`).")


def test_section_on_a_cpu_latency_shaped_run():
    text = accuracy_against_cost(RunView(read_run(CPU)))
    golden("accuracy_cpu.md", text)
    assert "**Pareto front by latency: `none`, `se`, `coord`**; by FLOPs: `none`, `se`, `cbam`, `coord`" in text
    assert "| cbam | +1.3 |" in text and "| oom |" in text  # CBAM ran out of memory at batch 8
    assert "No published gain for `eca` in mobilenet_v2." in text


def test_costs_are_taken_at_the_largest_batch_the_plain_backbone_finished():
    (mobilenet, resnet) = choices(RunView(read_run(CPU)), published_rows())
    assert mobilenet.batch == resnet.batch == 8
    se = next(p for p in mobilenet.points if p.attention == "se")
    assert se.costs["latency_overhead_pct"] == pytest.approx(100 * (47.0 / 40.0 - 1))
    assert se.interval == pytest.approx((100 * (47 * 0.98 / (40 * 1.02) - 1), 100 * (47 * 1.02 / (40 * 0.98) - 1)))
    assert [p.attention for p in resnet.points] == ["none", "se", "se(bias=True)"]
    assert [p.exact for p in resnet.points] == [True, False, True]


def test_section_is_left_out_without_latency_or_without_a_published_pair():
    assert accuracy_against_cost(RunView(read_run(COMPLEXITY))) is None
    run = read_run(SMOKE)
    run.cases = run.cases[run.cases["backbone"] == "resnet18"]
    assert accuracy_against_cost(RunView(run)) is None


def test_report_draws_the_figure_and_the_cli_joins_the_lab_csv(tmp_path: Path, monkeypatch):
    lab_project(tmp_path)
    run_dir = Path(shutil.copytree(CPU, tmp_path / "results" / CPU.name))
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / "report.md").read_text()
    assert "### Accuracy against cost" in text
    lab = "| se | +0.2 | MobileNetV2 + SE (ours) 72.1% vs MobileNetV2 (ours) 71.9%, 90/? epochs (lab) | our lab |"
    assert lab in text
    assert "+1.2 (CA MobileNetV2 + SE)" in text  # the published gain, now second
    figures = sorted((run_dir / "report-figures").glob("*-accuracy-*.png"))
    assert [f.name for f in figures] == [f"{CPU.name}-accuracy-mobilenet-v2-at-224-px-float32-eval-cpu.png",
                                         f"{CPU.name}-accuracy-resnet50-at-224-px-float32-eval-cpu.png"]
    assert all(f.stat().st_size > 10_000 for f in figures)
    assert "![published top-1 gain vs overhead at batch 8: mobilenet_v2 at 224 px" in text


def test_the_figures_legend_explains_only_what_it_draws():
    from attnbench.report.accuracy_section import legend_entries, run_choices

    for choice in filter(lambda choice: choice.weighed, run_choices(RunView(read_run(CPU)))):
        labels = legend_entries(choice, choice.measured)[1]
        drawn_front = any(len([p for p in choice.points if c in p.front]) > 1 for c in choice.measured)
        assert ("Pareto front (black edge: on it)" in labels) is drawn_front
        assert ("black edge: on the Pareto front" in labels) is not drawn_front
        shaded = any(point.rows[1:] for point in choice.points)
        assert ("shaded: other published gains of the module" in labels) is shaded


def test_library_reports_use_the_shipped_table_unless_given_rows(tmp_path: Path):
    run_dir = Path(shutil.copytree(CPU, tmp_path / CPU.name))
    assert "(lab)" not in write_report(run_dir).read_text()
    options = ReportOptions(accuracy=accuracy_rows(lab_project(tmp_path / "project")))
    assert "(lab)" in write_report(run_dir, options=options).read_text()


def test_list_attention_shows_published_gains_within_80_columns(tmp_path: Path, monkeypatch, capsys):
    lab_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list", "attention"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    header = " ".join(out.splitlines()[:2])
    for column in ("key", "placement", "params", "published", "paper"):  # every column drawn, none cut off
        assert column in header, column
    lines = "\n".join(out.splitlines())
    for text in ("+0.53 pp X50", "+1.44 pp X50", "+2.0 pp MNv2", "+1.1 pp R50", "+0.5 pp R50", "(our lab)"):
        assert text in lines, text
