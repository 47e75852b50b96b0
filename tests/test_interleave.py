"""Interleaved timing: cases that differ only in their attention entry take turns, so drift hits all alike."""

from __future__ import annotations

import pytest
import torch

from attnbench.config import AttentionEntry, CaseSpec, TimingSpec, load_suite
from attnbench.measure.timing import CpuTimer, interleaved_repeats
from attnbench.results import read_run
from attnbench.runner import run_suite
from attnbench.schedule import comparison_groups
from tests.conftest import write
from tests.test_timing import FakeClock


class LoggedStep:
    """Advances the fake clock by `duration` (plus `drift` per call so far, all steps together) and logs."""

    def __init__(self, name: str, clock: FakeClock, log: list[str], duration: float, drift: float = 0.0):
        self.name, self.clock, self.log, self.duration, self.drift = name, clock, log, duration, drift

    def __call__(self) -> None:
        self.clock.now += self.duration + self.drift * len(self.log)
        self.log.append(self.name)


def interleave(timing: TimingSpec, durations: dict[str, float], drift: float = 0.0):
    clock, log = FakeClock(), []
    steps = {name: LoggedStep(name, clock, log, d, drift) for name, d in durations.items()}
    timers = {name: CpuTimer(torch.device("cpu"), clock) for name in steps}
    return interleaved_repeats(steps, timing, timers, clock), log


def test_every_step_takes_a_turn_in_every_round():
    timing = TimingSpec(warmup=1, min_repeats=4, max_repeats=100, max_seconds=0.004, rounds=2)
    timings, log = interleave(timing, {"none": 0.001, "se": 0.002})
    assert timings["none"].latency_ms == pytest.approx([1.0] * 4)
    assert timings["se"].latency_ms == pytest.approx([2.0] * 4)
    # warm-up, then per round and step: one untimed call and the turn's timed calls
    assert log == ["none", "se"] + ["none"] * 3 + ["se"] * 3 + ["none"] * 3 + ["se"] * 3


def test_budget_is_split_over_rounds():
    timing = TimingSpec(warmup=0, min_repeats=2, max_repeats=1000, max_seconds=0.1, rounds=4)
    timings, _ = interleave(timing, {"none": 0.001, "se": 0.001})
    # each turn times for max_seconds / rounds = 25 ms of 1 ms calls
    assert len(timings["none"].latency_ms) == len(timings["se"].latency_ms) == 4 * 25


def test_drift_lands_on_every_case_alike():
    """A machine that slows down steadily: in sequence the later case looks slower, interleaved it does not."""
    durations = {"none": 0.001, "se": 0.001}
    sequential = TimingSpec(warmup=0, min_repeats=20, max_repeats=20, max_seconds=1.0, rounds=1)
    interleaved = TimingSpec(warmup=0, min_repeats=20, max_repeats=20, max_seconds=1.0, rounds=10)
    one_after_other, _ = interleave(sequential, durations, drift=1e-5)
    taking_turns, _ = interleave(interleaved, durations, drift=1e-5)

    def ratio(timings) -> float:
        return sum(timings["se"].latency_ms) / sum(timings["none"].latency_ms)

    assert ratio(one_after_other) > 1.15
    assert abs(ratio(taking_turns) - 1) < 0.05


def case(attention: str, batch: int) -> CaseSpec:
    return CaseSpec("resnet18", AttentionEntry(attention, attention), batch, 32, "float32", "eval", "cpu")


def test_comparison_groups_collect_the_attention_entries_of_one_setting():
    cases = [case("none", 1), case("none", 2), case("se", 1), case("se", 2)]
    assert [group.cases for group in comparison_groups(cases)] == [(cases[0], cases[2]), (cases[1], cases[3])]


def test_runner_interleaves_and_keeps_every_case(project, project_dir):
    text = (project_dir / "suites" / "tiny.toml").read_text()
    text = text.replace("batch_sizes = [1]", "batch_sizes = [1, 2]").replace('"se"]', '"se", "eca"]')
    suite = load_suite(str(write(project_dir / "suites" / "rounds.toml", text + "rounds = 3\n")), project)
    run = read_run(run_suite(suite, project))
    assert len(run.cases) == 6 and (run.cases["status"] == "ok").all()
    assert run.cases[["attention", "batch_size"]].values.tolist() == [
        ["none", 1], ["se", 1], ["eca", 1], ["none", 2], ["se", 2], ["eca", 2]
    ]
    for row in run.cases.itertuples():
        assert row.repeats == len(run.samples_of(row.case_id)) >= 3


def test_max_repeats_is_a_total_over_all_rounds():
    timing = TimingSpec(warmup=0, min_repeats=3, max_repeats=3, max_seconds=1.0, rounds=4)
    timings, log = interleave(timing, {"none": 0.001, "se": 0.001})
    assert len(timings["none"].latency_ms) == len(timings["se"].latency_ms) == 3
    assert log.count("none") == 3 * 2  # three turns of one untimed and one timed call; the fourth is skipped
