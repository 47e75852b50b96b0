"""The regression gate: statistics on synthetic samples (no clock), run matching, config, CLI exit codes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from attnbench.cli import main
from attnbench.config import GateConfig, GateOverride, GateThresholds, load_project, parse_fraction
from attnbench.errors import ConfigError, GateError
from attnbench.gate import (
    IntervalCheck,
    RatioCheck,
    RatioStats,
    SignificanceCheck,
    Verdict,
    classify,
    compare_runs,
    min_p_value,
    ratio_stats,
    resolve_run,
)
from attnbench.report.compare import comparison_markdown
from attnbench.results import RunWriter, read_run

TRIALS = 100
THRESHOLDS = GateThresholds(max_slowdown=0.05, alpha=0.01)
ENV = {"device_name": "Test CPU", "torch": "2.14.1", "threads": 2, "cuda": None, "cudnn": None}


def verdicts(slowdown: float, noise: float = 0.05, n: int = 30) -> list[Verdict]:
    """One verdict per seeded trial: baseline ~ 10 ms, current ~ 10 ms * slowdown, Gaussian noise."""
    found = []
    for seed in range(TRIALS):
        rng = np.random.default_rng(seed)
        baseline = 10 * (1 + noise * rng.standard_normal(n))
        current = 10 * slowdown * (1 + noise * rng.standard_normal(n))
        found.append(classify(ratio_stats(baseline, current, THRESHOLDS.alpha, seed), THRESHOLDS)[0])
    return found


# --- the statistics ---------------------------------------------------------------------------------


def test_identical_distributions_pass_at_least_99_of_100():
    found = verdicts(1.0)
    assert found.count(Verdict.REGRESSION) <= 1
    assert found.count(Verdict.IMPROVEMENT) <= 1


def test_ten_percent_slowdown_with_five_percent_noise_caught_at_least_95_of_100():
    assert verdicts(1.10).count(Verdict.REGRESSION) >= 95


def test_ten_percent_speedup_is_an_improvement_not_a_regression():
    found = verdicts(1 / 1.10)
    assert found.count(Verdict.IMPROVEMENT) >= 95
    assert Verdict.REGRESSION not in found


def test_three_percent_slowdown_under_a_five_percent_threshold_passes():
    assert verdicts(1.03).count(Verdict.REGRESSION) <= 5
    assert Verdict.REGRESSION not in verdicts(1.03, noise=0.01)


def test_significant_but_small_slowdown_is_unchanged():
    # 2% slower with 0.5% noise: the U test is certain, the threshold is not crossed.
    rng = np.random.default_rng(0)
    baseline = 10 * (1 + 0.005 * rng.standard_normal(50))
    stats = ratio_stats(baseline, baseline * 1.02, THRESHOLDS.alpha)
    assert stats.p_value < 1e-6
    assert classify(stats, THRESHOLDS)[0] is Verdict.UNCHANGED


def test_large_but_insignificant_difference_is_inconclusive_and_says_what_it_resolves():
    stats = ratio_stats([10.0, 30.0, 11.0, 29.0], [12.0, 31.0, 13.0, 33.0], THRESHOLDS.alpha)
    assert stats.ratio > 1.05
    verdict, note = classify(stats, THRESHOLDS)
    assert verdict is Verdict.INCONCLUSIVE
    assert note.startswith("a slowdown of 5.0% cannot be ruled out (interval up to +") and "resolves changes of" in note


def test_a_precise_case_that_did_not_change_is_unchanged_not_inconclusive():
    rng = np.random.default_rng(4)
    baseline, current = 10 * (1 + 0.005 * rng.standard_normal((2, 50)))
    assert classify(ratio_stats(baseline, current, THRESHOLDS.alpha), THRESHOLDS) == (Verdict.UNCHANGED, "")


def relative_verdicts(slowdown: float, drift: float, noise: float = 0.05 / 2**0.5, rounds: int = 30) -> list[Verdict]:
    """Seeded trials of the default gate's statistic: per-round ratios module / none in each run (5% noise
    on a ratio: each time 3.5%), the machine `drift` slower in the current run and wandering +-10% within
    each run, which the pairing cancels."""
    found = []
    for seed in range(TRIALS):
        rng = np.random.default_rng(seed + 1000)

        def ratios(scale: float, module: float) -> np.ndarray:
            machine = scale * (1 + 0.1 * np.sin(np.linspace(0, 6, rounds)))  # drift within the run
            none = 10 * machine * (1 + noise * rng.standard_normal(rounds))
            return 11 * module * machine * (1 + noise * rng.standard_normal(rounds)) / none

        stats = ratio_stats(ratios(1.0, 1.0), ratios(1 + drift, slowdown), THRESHOLDS.alpha, seed)
        found.append(classify(stats, THRESHOLDS)[0])
    return found


def test_relative_gate_false_alarms_at_most_1_in_100_and_ignores_a_slower_machine():
    assert relative_verdicts(1.0, drift=0.0).count(Verdict.REGRESSION) <= 1
    assert relative_verdicts(1.0, drift=0.15).count(Verdict.REGRESSION) <= 1


def test_relative_gate_catches_a_ten_percent_slower_module_at_least_95_in_100():
    assert relative_verdicts(1.10, drift=0.0).count(Verdict.REGRESSION) >= 95
    assert relative_verdicts(1.10, drift=-0.10).count(Verdict.REGRESSION) >= 95


def test_bootstrap_is_seeded_and_brackets_the_ratio():
    rng = np.random.default_rng(1)
    baseline, current = rng.normal(10, 0.5, 30), rng.normal(11, 0.5, 30)
    first, again = ratio_stats(baseline, current, 0.01, seed=3), ratio_stats(baseline, current, 0.01, seed=3)
    assert first == again
    assert first.ci_low <= first.likely_low <= first.ratio <= first.likely_high <= first.ci_high


def test_checks_return_a_message_or_none():
    slow = RatioStats(ratio=1.2, ci_low=1.1, ci_high=1.3, likely_low=1.15, likely_high=1.25, p_value=1e-4)
    same = RatioStats(ratio=1.0, ci_low=0.9, ci_high=1.1, likely_low=0.97, likely_high=1.03, p_value=0.5)
    for check in (RatioCheck(0.05), SignificanceCheck(0.01), IntervalCheck()):
        assert isinstance(check.fails(slow), str)
        assert check.fails(same) is None
    assert RatioCheck(0.25).fails(slow) is None  # 1.15 at 80% confidence is under a 25% threshold


def test_inverted_stats_swap_the_runs():
    stats = RatioStats(ratio=2.0, ci_low=1.6, ci_high=2.5, likely_low=1.8, likely_high=2.2, p_value=0.001)
    inverted = stats.inverted()
    assert (inverted.ratio, inverted.ci_low, inverted.ci_high) == (0.5, 0.4, 0.625)
    assert inverted.likely_low == pytest.approx(1 / 2.2)


def test_min_p_value_tells_when_the_test_cannot_reach_alpha():
    assert min_p_value(4, 4) > 0.01
    assert min_p_value(5, 5) < 0.01


# --- run directories by hand --------------------------------------------------------------------------


def case(attention: str, samples: list[float] | None, status: str = "ok", **extra) -> dict:
    return {"attention": attention, "samples": samples, "status": status, **extra}


def make_run(root: Path, name: str, cases: list[dict], suite: str = "tiny", **env) -> Path:
    writer = RunWriter.create(root / name, {"suite": {"name": suite}, **ENV, **env})
    for index, spec in enumerate(cases):
        spec = dict(spec)
        samples = spec.pop("samples")
        row = {
            "case_id": f"{name}{index}", "backbone": "resnet18", "attention_key": spec["attention"],
            "batch_size": 1, "resolution": 32, "dtype": "float32", "mode": "eval", "device": "cpu",
            "error": "boom" if spec["status"] != "ok" else "", **spec,
        }
        writer.append_case(row, samples)
    writer.finish()
    return writer.path


def noisy(median: float, n: int = 30, seed: int = 0) -> list[float]:
    return (median * (1 + 0.02 * np.random.default_rng(seed).standard_normal(n))).tolist()


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A baseline and three current runs: identical, one case 30% slower, and one with cases changed."""
    baseline = make_run(tmp_path, "base", [case("none", noisy(10)), case("se", noisy(12)), case("cbam", noisy(15))])
    return {
        "baseline": baseline,
        "same": make_run(
            tmp_path, "same", [case("none", noisy(10, seed=1)), case("se", noisy(12, seed=2)), case("cbam", noisy(15, seed=3))]
        ),
        "slow": make_run(
            tmp_path, "slow", [case("none", noisy(10, seed=1)), case("se", noisy(15.6, seed=2)), case("cbam", noisy(15, seed=3))]
        ),
        "changed": make_run(
            tmp_path, "changed",
            [case("none", noisy(10, seed=1)), case("cbam", None, status="oom"), case("eca", noisy(11, seed=4))],
        ),
    }


def by_attention(comparison) -> dict[str, Verdict]:
    return {c.key["attention"]: c.verdict for c in comparison.cases}


def test_same_runs_pass(runs):
    comparison = compare_runs(read_run(runs["baseline"]), read_run(runs["same"]))
    assert comparison.passed
    verdicts = by_attention(comparison)
    assert verdicts.pop("none") is Verdict.REFERENCE and set(verdicts.values()) == {Verdict.UNCHANGED}
    assert comparison.warnings == ()


def test_slowed_case_is_the_only_regression(runs):
    comparison = compare_runs(read_run(runs["baseline"]), read_run(runs["slow"]))
    assert by_attention(comparison) == {
        "none": Verdict.REFERENCE, "se": Verdict.REGRESSION, "cbam": Verdict.UNCHANGED
    }
    assert not comparison.passed
    regression = comparison.of(Verdict.REGRESSION)[0]
    assert regression.path == "resnet18/se/1/32/float32/eval/cpu"
    assert regression.stats.ratio == pytest.approx(1.3, rel=0.03)


def test_missing_new_and_failed_cases_are_reported(runs):
    comparison = compare_runs(read_run(runs["baseline"]), read_run(runs["changed"]))
    assert by_attention(comparison) == {
        "none": Verdict.REFERENCE, "se": Verdict.MISSING, "cbam": Verdict.FAILED, "eca": Verdict.NEW
    }
    failed = comparison.of(Verdict.FAILED)[0]
    assert failed.failed_side == "current" and failed.note == "current oom: boom"
    # A case that measured in the baseline and fails now hides any slowdown: the gate fails.
    assert not comparison.passed


def test_relative_gate_ignores_drift_of_the_whole_machine(tmp_path):
    """The current run's machine is 15% slower for every case: absolute medians cry wolf, relative to
    `none` of the same run nothing changed; a module that got slower on top of the drift is still caught."""
    baseline = make_run(tmp_path, "b", [case("none", noisy(10)), case("se", noisy(12, seed=2))])
    drifted = make_run(tmp_path, "d", [case("none", noisy(11.5, seed=1)), case("se", noisy(13.8, seed=3))])
    slower_se = make_run(tmp_path, "s", [case("none", noisy(11.5, seed=1)), case("se", noisy(16.6, seed=3))])
    assert not compare_runs(read_run(baseline), read_run(drifted), absolute=True).passed
    relative = compare_runs(read_run(baseline), read_run(drifted))
    assert relative.passed and by_attention(relative) == {"none": Verdict.REFERENCE, "se": Verdict.UNCHANGED}
    assert relative.cases[0].note == "the reference of the relative comparison: not gated"
    assert relative.metric == "latency_ms relative to none"
    assert any(w.startswith("the plain backbone itself moved between the runs: `none` median +1") for w in relative.warnings)
    caught = compare_runs(read_run(baseline), read_run(slower_se))
    assert by_attention(caught)["se"] is Verdict.REGRESSION
    assert caught.of(Verdict.REGRESSION)[0].stats.ratio == pytest.approx(1.2, rel=0.03)


def test_without_a_finished_none_a_case_is_compared_absolutely_and_the_gate_says_so(tmp_path):
    baseline = make_run(tmp_path, "b", [case("none", noisy(10)), case("se", noisy(12, seed=2))])
    no_reference = make_run(tmp_path, "n", [case("none", None, status="oom"), case("se", noisy(12, seed=3))])
    comparison = compare_runs(read_run(baseline), read_run(no_reference))
    se = [c for c in comparison.cases if c.key["attention"] == "se"][0]
    assert se.verdict is Verdict.UNCHANGED and not se.relative
    assert any("compared as absolute times: their setting has no finished `none`" in w for w in comparison.warnings)


def test_a_case_failing_in_the_baseline_only_does_not_fail_the_gate(runs, tmp_path):
    broken = make_run(tmp_path, "broken", [case("none", noisy(10)), case("se", None, status="error")])
    comparison = compare_runs(read_run(broken), read_run(runs["same"]))
    assert by_attention(comparison)["se"] is Verdict.FAILED
    assert comparison.passed


def test_no_common_case_is_an_error(runs, tmp_path):
    other = make_run(tmp_path, "other", [case("eca", noisy(10))])
    with pytest.raises(GateError, match="no common cases"):
        compare_runs(read_run(runs["baseline"]), read_run(other))


def test_optional_axes_join_the_identity_when_filled(tmp_path):
    baseline = make_run(tmp_path, "a", [case("se", noisy(10), channels_last=True), case("se", noisy(20), channels_last=False)])
    current = make_run(tmp_path, "b", [case("se", noisy(10, seed=5), channels_last=True), case("se", noisy(20, seed=6), channels_last=False)])
    comparison = compare_runs(read_run(baseline), read_run(current))
    assert [c.verdict for c in comparison.cases] == [Verdict.UNCHANGED, Verdict.UNCHANGED]
    assert {c.key["channels_last"] for c in comparison.cases} == {"True", "False"}


def test_environment_difference_warns_and_strict_env_refuses(runs, tmp_path):
    elsewhere = make_run(tmp_path, "elsewhere", [case("none", noisy(10))], device_name="Other CPU", threads=8)
    comparison = compare_runs(read_run(runs["baseline"]), read_run(elsewhere))
    assert comparison.passed
    assert len(comparison.warnings) == 2
    assert "device_name 'Test CPU' in the baseline, 'Other CPU' now" in comparison.warnings[0]
    with pytest.raises(GateError, match="strict-env"):
        compare_runs(read_run(runs["baseline"]), read_run(elsewhere), strict_env=True)


def test_too_few_samples_are_warned_about(tmp_path):
    baseline = make_run(tmp_path, "a", [case("se", [10.0, 10.1, 10.2])])
    current = make_run(tmp_path, "b", [case("se", [20.0, 20.1, 20.2])])
    comparison = compare_runs(read_run(baseline), read_run(current))
    assert comparison.cases[0].underpowered
    assert any("too few samples" in warning for warning in comparison.warnings)


def test_unknown_metric_and_runs_without_samples_are_errors(runs, tmp_path):
    with pytest.raises(GateError, match="unknown metric 'flops'"):
        compare_runs(read_run(runs["baseline"]), read_run(runs["same"]), metric="flops")
    unmeasured = make_run(tmp_path, "unmeasured", [case("none", None)])
    with pytest.raises(GateError, match="no latency_ms samples"):
        compare_runs(read_run(runs["baseline"]), read_run(unmeasured))


def test_resolve_run_takes_the_latest_run_of_a_folder(runs, tmp_path):
    assert resolve_run(runs["baseline"], "baseline").path == runs["baseline"]
    assert resolve_run(tmp_path / "slow", "current").path == runs["slow"]
    with pytest.raises(GateError, match="does not exist"):
        resolve_run(tmp_path / "nope", "baseline")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GateError, match="holds no run directory"):
        resolve_run(tmp_path / "empty", "baseline")


def test_markdown_names_the_verdict_and_hides_unchanged_cases(runs):
    text = comparison_markdown(compare_runs(read_run(runs["baseline"]), read_run(runs["slow"])))
    assert text.startswith("## attnbench gate: FAIL (1 regression, 1 unchanged, 1 reference)")
    changed, details = text.split("<details>")
    assert "| regression | resnet18/se/1/32/float32/eval/cpu |" in changed
    assert "resnet18/none/" in details and "resnet18/none/" not in changed


# --- thresholds from attnbench.toml ---------------------------------------------------------------------


def test_parse_fraction_accepts_percent_and_fraction():
    assert parse_fraction("5%", "x") == pytest.approx(0.05)
    assert parse_fraction(0.05, "x") == pytest.approx(0.05)
    assert parse_fraction("150%", "x") == pytest.approx(1.5)
    for bad in ("5", "0%", "-3%", "fast", "nan"):
        with pytest.raises(ConfigError):
            parse_fraction(bad, "--max-slowdown")


def test_gate_table_defaults_suite_and_case_overrides(tmp_path):
    (tmp_path / "attnbench.toml").write_text(
        """
[gate]
max_slowdown = "4%"
alpha = 0.02
[gate.suites.gpu]
max_slowdown = 0.03
[[gate.cases]]
pattern = "*/cbam/*"
max_slowdown = "10%"
[[gate.cases]]
pattern = "resnet50/*"
suite = "gpu"
alpha = 0.001
"""
    )
    gate = load_project(tmp_path / "attnbench.toml").gate
    assert gate.thresholds_for("cpu", "resnet18/se/1/32") == GateThresholds(0.04, 0.02)
    assert gate.thresholds_for("gpu", "resnet18/se/1/32") == GateThresholds(0.03, 0.02)
    assert gate.thresholds_for("gpu", "resnet18/cbam/1/32") == GateThresholds(0.10, 0.02)
    assert gate.thresholds_for("gpu", "resnet50/se/1/32") == GateThresholds(0.03, 0.001)
    assert gate.thresholds_for("cpu", "resnet50/se/1/32") == GateThresholds(0.04, 0.02)


@pytest.mark.parametrize(
    "table, message",
    [
        ("[gate]\nmax_slowdown = 5", "gate.max_slowdown"),
        ("[gate]\nalpha = 1.5", "gate.alpha"),
        ("[gate]\nthreshold = 0.1", "unknown key"),
        ("[[gate.cases]]\nmax_slowdown = 0.1", r"gate.cases\[0\].pattern: required"),
    ],
)
def test_bad_gate_table_is_a_one_line_error(tmp_path, table, message):
    (tmp_path / "attnbench.toml").write_text(table)
    with pytest.raises(ConfigError, match=message):
        load_project(tmp_path / "attnbench.toml")


def test_per_case_threshold_turns_a_regression_into_a_pass(runs):
    tolerant = GateConfig(GateThresholds(), (GateOverride(max_slowdown=0.5, pattern="*/se/*"),))
    assert compare_runs(read_run(runs["baseline"]), read_run(runs["slow"]), tolerant).passed


def test_unimportable_plugin_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "attnbench.toml").write_text('plugins = ["no_such_plugin_module"]\n')
    with pytest.raises(ConfigError, match="cannot import plugin 'no_such_plugin_module'"):
        load_project(tmp_path / "attnbench.toml")



def test_an_empty_plugin_list_is_no_plugins(tmp_path):
    (tmp_path / "attnbench.toml").write_text("plugins = []\n")
    assert load_project(tmp_path / "attnbench.toml").plugins == ()
    (tmp_path / "attnbench.toml").write_text('plugins = "mine"\n')
    with pytest.raises(ConfigError, match="plugins"):
        load_project(tmp_path / "attnbench.toml")

# --- the command line -----------------------------------------------------------------------------------


def compare(*args: str) -> int:
    return main(["compare", *map(str, args)])


def test_cli_exit_codes(runs, tmp_path, capsys):
    assert compare(runs["baseline"], runs["same"]) == 0
    out = tmp_path / "comment.md"
    assert compare(runs["baseline"], runs["slow"], "--out", out) == 1
    assert "FAIL" in out.read_text()
    assert compare(runs["baseline"], runs["slow"], "--max-slowdown", "50%") == 0
    assert compare(runs["baseline"], tmp_path / "missing") == 2
    assert compare(runs["baseline"], runs["same"], "--max-slowdown", "5") == 2
    assert compare(runs["baseline"], runs["same"], "--alpha", "0") == 2
    assert compare(runs["baseline"], runs["same"], "--metric", "flops") == 2
    assert "attnbench: error: unknown metric 'flops'" in capsys.readouterr().err


def test_cli_env_warning_and_strict_env(runs, tmp_path, capsys):
    elsewhere = make_run(tmp_path, "elsewhere", [case("none", noisy(10))], torch="2.5.0")
    assert compare(runs["baseline"], elsewhere) == 0
    assert "attnbench: warning: environment differs: torch" in capsys.readouterr().err
    assert compare(runs["baseline"], elsewhere, "--strict-env") == 2
    assert "attnbench: error: environment differs" in capsys.readouterr().err


def test_cli_run_checks_its_gate_arguments_before_running(tmp_path, capsys):
    assert main(["run", "--suite", "smoke", "--fail-on-regression"]) == 2
    assert "--fail-on-regression needs --baseline" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--baseline", str(tmp_path / "nope")]) == 2
    assert "baseline" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--baseline", str(tmp_path), "--max-slowdown", "fast"]) == 2
    assert "--max-slowdown: 'fast' is not a fraction" in capsys.readouterr().err


# --- end to end on real CPU runs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_real_runs_same_suite_passes_slowed_module_fails(tmp_path, monkeypatch):
    """Two runs of one suite pass; a run whose module sleeps 10x longer fails, through `run --baseline`."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    shutil.copy(Path(__file__).parent / "plugins" / "slow_attention.py", tmp_path)
    config = tmp_path / "attnbench.toml"
    # Sleep dominates both runs (8 sites x 5 ms vs ResNet-18's ~20 ms of compute at 32 px), so the shared
    # test machine's load would have to double the compute between two runs to move a median by 100%.
    config.write_text(
        'plugins = ["slow_attention"]\nthreads = 1\n'
        "[timing]\nwarmup = 1\nmin_repeats = 8\nmax_seconds = 0.1\n[gate]\nmax_slowdown = \"100%\"\n"
    )
    suite = (
        'metrics = ["latency"]\n[grid]\nbackbones = ["resnet18"]\nbatch_sizes = [1]\nresolutions = [32]\n'
        'device = "cpu"\nattention = [{{ name = "slow_se", label = "gated", delay_ms = {delay} }}]\n'
    )
    (tmp_path / "suite.toml").write_text(suite.format(delay=5.0))

    def run(out: str, *extra: str) -> int:
        return main(["--config", str(config), "run", "--suite", str(tmp_path / "suite.toml"), "--out",
                     str(tmp_path / out), *extra])

    assert run("same") == 0
    (baseline,) = (tmp_path / "same").iterdir()
    assert run("again", "--baseline", str(baseline), "--fail-on-regression") == 0
    monkeypatch.setenv("SLOW_ATTENTION_FACTOR", "10")
    assert run("slowed", "--baseline", str(baseline), "--fail-on-regression") == 1
    (slowed,) = (tmp_path / "slowed").iterdir()
    assert "| regression | resnet18/gated/1/32/float32/eval/cpu |" in (slowed / "compare.md").read_text()
