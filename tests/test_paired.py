"""Paired timing: the cases of a group take turns call by call in a random order each round, and a
module's overhead comes from the rounds it shared with its `none`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnbench.config import AttentionEntry, CaseSpec, TimingSpec, load_suite
from attnbench.measure.stats import median_ci, paired_overhead, paired_ratios, per_round
from attnbench.measure.timing import CpuTimer, PrecisionTarget, paired_rounds
from attnbench.results import read_run
from attnbench.runner import run_suite
from attnbench.schedule import comparison_groups
from tests.conftest import write
from tests.test_timing import FakeClock


class LoggedStep:
    """Advances the fake clock by `duration` times the machine's speed at this moment, and logs."""

    def __init__(self, name: str, clock: FakeClock, log: list[str], duration: float, speed=lambda calls: 1.0):
        self.name, self.clock, self.log, self.duration, self.speed = name, clock, log, duration, speed

    def __call__(self) -> None:
        self.clock.now += self.duration * self.speed(len(self.log))
        self.log.append(self.name)


def timed(timing: TimingSpec, durations: dict[str, float], speed=lambda calls: 1.0, target=None, seed=0):
    clock, log = FakeClock(), []
    steps = {name: LoggedStep(name, clock, log, d, speed) for name, d in durations.items()}
    timers = {name: CpuTimer(torch.device("cpu"), clock) for name in steps}
    return paired_rounds(steps, timing, timers, clock, seed, target), log


def test_every_step_takes_one_turn_per_round_in_a_random_order():
    timing = TimingSpec(warmup=1, min_repeats=20, max_repeats=20, max_seconds=100.0)
    timings, log = timed(timing, {"none": 0.001, "se": 0.002, "eca": 0.0015})
    assert log[:3] == ["none", "se", "eca"]  # warm-up, in group order
    rounds = [log[3 + 3 * r: 6 + 3 * r] for r in range(20)]
    assert all(sorted(r) == ["eca", "none", "se"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 3  # the order changes from round to round
    assert timings["se"].latency_ms == pytest.approx([2.0] * 20) and timings["se"].rounds == list(range(20))
    again, log_again = timed(timing, {"none": 0.001, "se": 0.002, "eca": 0.0015})
    assert log_again == log  # seeded: the same group takes its turns in the same orders


def test_turns_have_their_untimed_and_timed_calls():
    timing = TimingSpec(warmup=0, min_repeats=2, max_repeats=2, calls_per_turn=3, turn_warmup=1)
    timings, log = timed(timing, {"none": 0.001, "se": 0.002})
    assert len(log) == 2 * 2 * 4 and len(timings["none"].latency_ms) == 2 * 3
    assert timings["none"].rounds == [0, 0, 0, 1, 1, 1]
    assert log[:4] in (["none"] * 4, ["se"] * 4)  # a turn is one step's calls in a row


def test_the_cap_is_max_seconds_per_case_and_min_repeats_always_run():
    capped, _ = timed(TimingSpec(warmup=0, min_repeats=2, max_repeats=1000, max_seconds=0.1), {"a": 0.01, "b": 0.01})
    assert len(capped["a"].latency_ms) == 10  # 2 x 0.1 s of 2 x 10 ms rounds
    slow, _ = timed(TimingSpec(warmup=0, min_repeats=5, max_repeats=1000, max_seconds=0.1), {"a": 1.0, "b": 1.0})
    assert len(slow["a"].latency_ms) == 5


def test_drift_cancels_in_the_pairs():
    """The machine slows down 50% over the run: a module 10% dearer than none reads as +10% from the pairs."""
    durations = {"none": 0.010, "se": 0.011}
    timing = TimingSpec(warmup=0, min_repeats=200, max_repeats=200, max_seconds=100.0)
    timings, _ = timed(timing, durations, speed=lambda calls: 1 + 0.5 * calls / 400)
    ratios = paired_ratios(per_round(timings["se"].latency_ms, timings["se"].rounds),
                           per_round(timings["none"].latency_ms, timings["none"].rounds))
    overhead = paired_overhead(ratios)
    assert overhead.pct == pytest.approx(10.0, abs=0.3) and overhead.half_width < 0.5


def test_timing_stops_once_every_overhead_meets_the_precision_target():
    rng = np.random.default_rng(0)
    noise = {"calls": 0}

    def speed(calls: int) -> float:
        noise["calls"] += 1
        return float(rng.lognormal(0, 0.05))

    timing = TimingSpec(warmup=0, min_repeats=10, max_repeats=5000, max_seconds=100.0)
    target = PrecisionTarget(1.0, "none")
    timings, _ = timed(timing, {"none": 0.01, "se": 0.011, "eca": 0.0105}, speed, target)
    rounds = len(timings["none"].latency_ms)
    assert 10 < rounds < 5000
    assert all(width <= 1.0 for width in target.half_widths(timings).values())
    loose, _ = timed(timing, {"none": 0.01, "se": 0.011}, speed, PrecisionTarget(5.0, "none"))
    assert len(loose["none"].latency_ms) < rounds


def test_a_group_without_baseline_meets_the_target_on_each_median():
    target = PrecisionTarget(2.0, None)
    timing = TimingSpec(warmup=0, min_repeats=10, max_repeats=2000, max_seconds=100.0)
    rng = np.random.default_rng(1)
    timings, _ = timed(timing, {"a": 0.01}, lambda calls: float(rng.lognormal(0, 0.05)), target)
    low, high = median_ci(timings["a"].latency_ms)
    assert (high - low) / 2 / np.median(timings["a"].latency_ms) * 100 <= 2.0


def test_median_interval_is_distribution_free_and_covers():
    rng = np.random.default_rng(2)
    covered = sum(low <= 0 <= high for low, high in (median_ci(rng.standard_cauchy(41)) for _ in range(1000)))
    assert 940 <= covered <= 990
    assert median_ci([3.0, 1.0, 2.0, 5.0, 4.0, 6.0]) == (1.0, 6.0)
    with pytest.raises(ValueError):
        median_ci([])


def test_ratios_pair_only_rounds_both_cases_have():
    module = per_round([2.0, 4.0, 6.0, 8.0], [0, 0, 1, 3])
    base = per_round([1.0, 2.0, 4.0], [0, 1, 2])
    assert paired_ratios(module, base).tolist() == [3.0, 3.0]
    assert paired_overhead(np.array([])) is None


def case(attention: str, batch: int) -> CaseSpec:
    return CaseSpec("resnet18", AttentionEntry(attention, attention), batch, 32, "float32", "eval", "cpu")


def test_comparison_groups_collect_the_attention_entries_of_one_setting():
    cases = [case("none", 1), case("none", 2), case("se", 1), case("se", 2)]
    assert [group.cases for group in comparison_groups(cases)] == [(cases[0], cases[2]), (cases[1], cases[3])]


def test_runner_pairs_every_module_with_its_none(project, project_dir):
    text = (project_dir / "suites" / "tiny.toml").read_text()
    text = text.replace("batch_sizes = [1]", "batch_sizes = [1, 2]").replace('"se"]', '"se", "eca"]')
    suite = load_suite(str(write(project_dir / "suites" / "paired.toml", text + "precision = 50.0\n")), project)
    run = read_run(run_suite(suite, project))
    assert len(run.cases) == 6 and (run.cases["status"] == "ok").all()
    assert run.cases[["attention", "batch_size"]].values.tolist() == [
        ["none", 1], ["se", 1], ["eca", 1], ["none", 2], ["se", 2], ["eca", 2]
    ]
    for row in run.cases.itertuples():
        samples = run.samples[run.samples["case_id"] == row.case_id]
        assert row.repeats == len(samples) >= 3 and samples["round"].tolist() == list(range(len(samples)))
    modules = run.cases[run.cases["attention"] != "none"]
    assert modules["latency_overhead_pct"].notna().all() and modules["precision_met"].notna().all()
    assert (modules["latency_overhead_ci_low_pct"] <= modules["latency_overhead_pct"]).all()
    assert run.cases.loc[run.cases["attention"] == "none", "latency_overhead_pct"].isna().all()


def test_rounds_of_older_suites_still_read(project, project_dir):
    text = (project_dir / "suites" / "tiny.toml").read_text()
    assert load_suite(str(write(project_dir / "suites" / "one.toml", text + "rounds = 1\n")), project).timing.interleave is False
    assert load_suite(str(write(project_dir / "suites" / "four.toml", text + "rounds = 4\n")), project).timing.interleave


def test_calibrate_times_none_against_its_twin_and_records_the_noise_floor(project_dir, capsys):
    from attnbench.cli import main
    from attnbench.results import find_runs

    config = str(project_dir / "attnbench.toml")
    assert main(["--config", config, "calibrate", "--suite", "tiny", "--out", str(project_dir / "cal")]) == 0
    out = capsys.readouterr().out
    assert "Noise floor (A/A). `none A/A`, a second copy of the plain backbone timed like a module in 1 group(s)" in out
    (run_dir,) = find_runs(project_dir / "cal")
    run = read_run(run_dir)
    assert run.cases["attention"].tolist() == ["none", "none A/A"] and run.meta["suite"]["metrics"] == ["latency"]
    calibration = run.meta["calibration"]
    assert calibration["groups"] == 1 and calibration["resolvable_difference_pct"] == pytest.approx(
        2 * calibration["median_half_width_pct"])
    twin = run.cases.set_index("attention").loc["none A/A"]
    assert twin["latency_overhead_ci_low_pct"] <= twin["latency_overhead_pct"] <= twin["latency_overhead_ci_high_pct"]
    from attnbench.report import write_report

    assert "**Noise floor (A/A).**" in write_report(run_dir).read_text()


def test_run_calibrate_adds_the_twin_beside_the_modules(project_dir, capsys):
    from attnbench.cli import main
    from attnbench.results import find_runs

    config = str(project_dir / "attnbench.toml")
    assert main(["--config", config, "run", "--suite", "tiny", "--calibrate", "--out", str(project_dir / "r")]) == 0
    (run_dir,) = find_runs(project_dir / "r")
    run = read_run(run_dir)
    assert run.cases["attention"].tolist() == ["none", "none A/A", "se"]
    assert "calibration" in run.meta
    text = (project_dir / "suites" / "tiny.toml").read_text().replace('"none", "se"', '"se"')
    no_none = write(project_dir / "suites" / "no-none.toml", text)
    assert main(["--config", config, "calibrate", "--suite", str(no_none)]) == 2
    assert "has no `none` entry to calibrate against" in capsys.readouterr().err
