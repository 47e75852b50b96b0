"""Latency: a timer per device type, warm-up, then repeats adapted to a time budget; raw samples kept.

Every timed repeat yields two numbers: the device time (`latency_ms`: CUDA events on a GPU, the wall
clock on the CPU) and the wall time around the call (`wall_ms`: synchronize + perf_counter), so a
launch-bound case shows as wall time well above device time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attnbench.config import TimingSpec
from attnbench.measure.gpu_state import read_state, state_columns
from attnbench.measure.prepared import Clock, PreparedCase, Step, compiled_graphs
from attnbench.measure.stats import paired_overhead, paired_ratios, per_round, relative_half_width, summarize
from attnbench.modules import BASELINE
from attnbench.runtimes import uses_dynamo
from attnbench.seeds import stable_seed


# --- timers ---------------------------------------------------------------------------------------


class Timer:
    """Times one call of a step on one device type; `clock` is injectable so tests use a fake one."""

    min_warmup = 0
    """Warm-up calls this device always needs, whatever the suite says."""

    def __init__(self, device: torch.device, clock: Clock):
        self.device = device
        self.clock = clock
        self.flush: Step | None = None

    def synchronize(self) -> None:
        """Waits for queued work; nothing to wait for where calls are synchronous."""

    def cache_bytes(self) -> int | None:
        """The size of the cache an L2 flush must overwrite; None where no flush is implemented."""
        return None

    def enable_flush(self) -> None:
        raise NotImplementedError(f"no cache flush on {self.device.type}")

    def __call__(self, step: Step) -> tuple[float, float]:
        """(device ms, wall ms) of one call."""
        start = self.clock()
        step()
        elapsed = (self.clock() - start) * 1e3
        return elapsed, elapsed


class CpuTimer(Timer):
    """perf_counter around the call: CPU ops run synchronously, so device time is the wall time."""


class CudaTimer(Timer):
    """CUDA events around each call for device time, read after one synchronize at the end of the call.

    Before the start event the GPU is kept busy, by the L2 flush or else by a short spin kernel, and
    nothing synchronizes between that and the call: by the time the GPU reaches the start event, the CPU
    has queued the call's first kernels, so neither the synchronize's latency nor the Python time before
    the first launch lands in the events, while the gaps between the call's own kernels (the launches
    eager mode really pays) do. Timing N calls between one pair of events instead (triton's do_bench
    batch) would hide those gaps whenever the CPU runs ahead: a throughput, not a call's latency. The
    CUDA-graph replay (graph_ms_median) measures the call without any launch gap.

    The wall time is the host's: the clock around issuing the call (Python, dispatch and launches), not
    waiting for it; a case whose wall time exceeds its device time is launch-bound.
    """

    min_warmup = 1  # the first call of a shape runs lazy init and cuDNN's algorithm search
    SPIN_CYCLES = 200_000
    """~0.1 ms at 2 GHz: longer than the host takes to issue a call's first kernels."""

    def __init__(self, device: torch.device, clock: Clock):
        super().__init__(device, clock)
        self.start_event = torch.cuda.Event(enable_timing=True)
        self.end_event = torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def cache_bytes(self) -> int:
        return torch.cuda.get_device_properties(self.device).L2_cache_size

    def enable_flush(self) -> None:
        # Twice the L2 size, so that no line of the previous repeat survives.
        buffer = torch.empty(2 * self.cache_bytes(), dtype=torch.uint8, device=self.device)
        self.flush = buffer.zero_

    def __call__(self, step: Step) -> tuple[float, float]:
        self.synchronize()  # the previous call is done: its time is not this one's
        if self.flush is not None:
            self.flush()
        else:
            torch.cuda._sleep(self.SPIN_CYCLES)
        self.start_event.record()
        wall_start = self.clock()
        step()
        wall_ms = (self.clock() - wall_start) * 1e3
        self.end_event.record()
        self.synchronize()
        return self.start_event.elapsed_time(self.end_event), wall_ms


TIMERS = {"cpu": CpuTimer, "cuda": CudaTimer}


def make_timer(device: torch.device, clock: Clock) -> Timer:
    return TIMERS[device.type](device, clock)


def apply_flush_rule(timer: Timer, rule: str, working_set_bytes: int) -> bool:
    """Turns the L2 flush on per the suite's rule and says whether it is on.

    `auto` flushes when the timed call's working set (inputs + parameters) fits in the cache: only
    then could repeats find it warm from the previous call, which a real pipeline would not.
    """
    size = timer.cache_bytes()
    if size is None or rule == "off" or (rule == "auto" and working_set_bytes >= size):
        return False
    timer.enable_flush()
    return True


# --- repeats --------------------------------------------------------------------------------------


@dataclass
class Timings:
    """Raw samples of one timed step, in milliseconds, and what timing it cost."""

    latency_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    """The round of each sample: samples of one round were taken in one randomized pass over the group."""
    elapsed_s: float = 0.0
    """Wall time of every call of the step while it was timed: warm-up, untimed and timed calls."""
    graphs: int = 0
    graph_breaks: int = 0
    """Graphs dynamo compiled, and graph breaks it met, during this step's calls (a recompilation)."""


Probe = Callable[[], tuple[int, int]]


@contextmanager
def booked(timings: Timings, clock: Clock, probe: Probe | None) -> Iterator[None]:
    """Books the wall time and the compilations of the calls inside the block on `timings`."""
    start, before = clock(), probe() if probe else (0, 0)
    try:
        yield
    finally:
        timings.elapsed_s += clock() - start
        if probe:
            graphs, breaks = probe()
            timings.graphs += graphs - before[0]
            timings.graph_breaks += breaks - before[1]


def warm_up(step: Step, timing: TimingSpec, timer: Timer, clock: Clock) -> None:
    """`warmup` untimed calls (at least the timer's minimum), ending early once they have taken
    warmup_seconds: a slow step is warm after its first call (on CUDA, where calls return before the
    device is done, the count decides)."""
    calls, start = max(timing.warmup, timer.min_warmup), clock()
    for done in range(calls):
        if done >= max(1, timer.min_warmup) and clock() - start >= timing.warmup_seconds:
            break
        step()
    timer.synchronize()


def adaptive_repeats(step: Step, timing: TimingSpec, timer: Timer, clock: Clock, probe: Probe | None = None) -> Timings:
    """Warm-up, then at least min_repeats, then more until max_seconds (wall, from after warm-up,
    harness work included) or max_repeats is reached."""
    timings = Timings()
    with booked(timings, clock, probe):
        warm_up(step, timing, timer, clock)
        budget_start = clock()
        while len(timings.latency_ms) < timing.max_repeats:
            if len(timings.latency_ms) >= timing.min_repeats and clock() - budget_start >= timing.max_seconds:
                break
            latency_ms, wall_ms = timer(step)
            timings.latency_ms.append(latency_ms)
            timings.wall_ms.append(wall_ms)
    return timings


class PrecisionTarget:
    """Whether every case of a group is known well enough to stop timing: each module's paired overhead over
    the baseline has a 95% interval no wider than ±`points`; without a baseline in the group, each case's
    median has an interval no wider than ±`points` % of itself."""

    def __init__(self, points: float, baseline: str | None):
        self.points, self.baseline = points, baseline

    def met(self, timings: dict[str, Timings]) -> bool:
        return all(half_width <= self.points for half_width in self.half_widths(timings).values())

    def half_widths(self, timings: dict[str, Timings]) -> dict[str, float]:
        """Each case's interval half-width in points (modules over the baseline, or alone)."""
        if self.baseline is None:
            return {key: relative_half_width(taken.latency_ms) for key, taken in timings.items()}
        base = per_round(timings[self.baseline].latency_ms, timings[self.baseline].rounds)
        widths = {}
        for key, taken in timings.items():
            if key != self.baseline:
                overhead = paired_overhead(paired_ratios(per_round(taken.latency_ms, taken.rounds), base))
                widths[key] = overhead.half_width if overhead else math.inf
        return widths


def paired_rounds(
    steps: dict[str, Step], timing: TimingSpec, timers: dict[str, Timer], clock: Clock, seed: int,
    target: PrecisionTarget | None = None, probe: Probe | None = None,
) -> dict[str, Timings]:
    """Times the steps of a group in rounds: every round calls each step in a new random order (randomized
    multiple interleaved trials, Abedi & Brecht, ICPE 2017), `calls_per_turn` timed calls per turn after
    `turn_warmup` untimed ones. Drift of the machine then lands on every step of a round alike, and a
    module's overhead over its baseline is taken round by round (stats.paired_overhead).

    After warm-up and at least `min_repeats` rounds, timing stops when the precision target is met, or at
    the cap of `max_seconds` per step (wall, harness work included), or after `max_repeats` rounds.
    """
    timings = {key: Timings() for key in steps}
    for key, step in steps.items():
        with booked(timings[key], clock, probe):
            warm_up(step, timing, timers[key], clock)
    rng = np.random.default_rng(seed)
    keys = list(steps)
    cap = timing.max_seconds * len(steps)
    start = clock()
    for round_index in range(timing.max_repeats):
        for position in rng.permutation(len(keys)):
            key = keys[position]
            step, timer, taken = steps[key], timers[key], timings[key]
            with booked(taken, clock, probe):
                for _ in range(timing.turn_warmup):
                    step()
                for _ in range(timing.calls_per_turn):
                    latency_ms, wall_ms = timer(step)
                    taken.latency_ms.append(latency_ms)
                    taken.wall_ms.append(wall_ms)
                    taken.rounds.append(round_index)
        done = round_index + 1
        # The target is checked about ten times per doubling of the rounds: often enough to stop soon
        # after it is met, rarely enough to cost nothing beside the calls.
        if done >= timing.min_repeats and (
            clock() - start >= cap or (target is not None and done % max(1, done // 10) == 0 and target.met(timings))
        ):
            break
    return timings


# --- a comparison group's latency -----------------------------------------------------------------


@dataclass
class GroupTimings:
    """What timing a comparison group gave each of its cases, by case id."""

    timings: dict[str, Timings]
    l2_flush: bool
    baseline: str | None = None
    """The case id of the group's `none`, which the paired overheads are taken over."""
    gpu: dict[str, Any] = field(default_factory=dict)
    """The GPU's clocks, temperature and throttling around the timing (gpu_state.state_columns)."""


def group_flush(timers: list[Timer], rule: str, working_sets: list[int]) -> bool:
    """One L2 flush decision for a whole group, so that a module and its `none` are timed alike: on when
    the smallest working set fits in the cache (that case's repeats could find it warm)."""
    return all([apply_flush_rule(timer, rule, min(working_sets)) for timer in timers])


def time_group(prepared: dict[str, PreparedCase], timing: TimingSpec, clock: Clock) -> GroupTimings:
    """Times the prepared cases of one comparison group together in paired rounds, each case on its own
    timer, all with the same flush decision; the order of every round is seeded by the group."""
    timers = {key: make_timer(case.device, clock) for key, case in prepared.items()}
    flushed = group_flush(
        list(timers.values()), timing.l2_flush, [case.prepared.working_set_bytes for case in prepared.values()]
    )
    compiles = any(uses_dynamo(case.case) for case in prepared.values())
    baseline = next((key for key, case in prepared.items() if case.case.attention.key == BASELINE
                     and case.case.attention.label == BASELINE), None)
    target = PrecisionTarget(timing.precision, baseline) if timing.precision else None
    seed = stable_seed(*sorted(prepared))
    steps = {key: case.step for key, case in prepared.items()}
    device = next(iter(prepared.values())).device
    before = read_state(device)
    timings = paired_rounds(steps, timing, timers, clock, seed, target, compiled_graphs if compiles else None)
    for case in prepared.values():
        case.prepared.warm = True
    return GroupTimings(timings, flushed, baseline, state_columns(before, read_state(device)))


def latency_columns(
    prepared: PreparedCase, group: GroupTimings, precision: float | None
) -> dict[str, Any]:
    """The latency columns of cases.csv, derived from the raw samples: statistics of the case's own
    samples, and for a module its overhead over the group's `none`, round by round."""
    timings = group.timings[prepared.case.case_id]
    flushed = group.l2_flush
    stats: dict[str, Any] = summarize(timings.latency_ms)
    stats["wall_ms_median"] = float(np.median(timings.wall_ms))
    stats["throughput_ips"] = prepared.case.batch_size / (stats["latency_ms_median"] / 1e3)
    stats["l2_flush"] = flushed
    stats.update(group.gpu)
    if group.baseline is not None and group.baseline != prepared.case.case_id:
        base = group.timings[group.baseline]
        ratios = paired_ratios(per_round(timings.latency_ms, timings.rounds), per_round(base.latency_ms, base.rounds))
        overhead = paired_overhead(ratios)
        if overhead is not None:
            stats.update(
                latency_overhead_pct=overhead.pct, latency_overhead_ci_low_pct=overhead.ci_low_pct,
                latency_overhead_ci_high_pct=overhead.ci_high_pct,
            )
            if precision:
                stats["precision_met"] = overhead.half_width <= precision
    elif precision:
        stats["precision_met"] = relative_half_width(timings.latency_ms) <= precision
    if uses_dynamo(prepared.case):
        stats["compile_graphs"] = prepared.prepared.graphs + timings.graphs
        stats["graph_breaks"] = prepared.prepared.graph_breaks + timings.graph_breaks
    return stats
