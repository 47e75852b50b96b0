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
from attnbench.measure.prepared import Clock, PreparedCase, Step, compiled_graphs
from attnbench.measure.stats import summarize


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
    """CUDA events around the call for device time; synchronize + the clock around it for wall time."""

    min_warmup = 1  # the first call of a shape runs lazy init and cuDNN's algorithm search

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
        if self.flush is not None:
            self.flush()  # outside the timed region: before the synchronize and the start event
        self.synchronize()
        wall_start = self.clock()
        self.start_event.record()
        step()
        self.end_event.record()
        self.synchronize()
        wall_ms = (self.clock() - wall_start) * 1e3
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


def adaptive_repeats(step: Step, timing: TimingSpec, timer: Timer, clock: Clock, probe: Probe | None = None) -> Timings:
    """Warm-up, then at least min_repeats, then more until max_seconds (wall, from after warm-up,
    harness work included) or max_repeats is reached."""
    timings = Timings()
    with booked(timings, clock, probe):
        for _ in range(max(timing.warmup, timer.min_warmup)):
            step()
        timer.synchronize()
        budget_start = clock()
        while len(timings.latency_ms) < timing.max_repeats:
            if len(timings.latency_ms) >= timing.min_repeats and clock() - budget_start >= timing.max_seconds:
                break
            latency_ms, wall_ms = timer(step)
            timings.latency_ms.append(latency_ms)
            timings.wall_ms.append(wall_ms)
    return timings


def interleaved_repeats(
    steps: dict[str, Step], timing: TimingSpec, timers: dict[str, Timer], clock: Clock,
    probe: Probe | None = None,
) -> dict[str, Timings]:
    """Times several steps in `timing.rounds` rounds, each step taking its turn in every round.

    Each turn starts with one untimed call (the previous step evicted this one's weights from the
    caches), then times at least min_repeats / rounds calls and goes on for max_seconds / rounds, at most
    max_repeats / rounds calls (and max_repeats in all). Over all rounds a step gets what adaptive_repeats
    would give it, but slow drift of the machine is spread over every step instead of landing on
    whichever ran at the wrong moment.
    """
    timings = {key: Timings() for key in steps}
    for key, step in steps.items():
        with booked(timings[key], clock, probe):
            for _ in range(max(timing.warmup, timers[key].min_warmup)):
                step()
            timers[key].synchronize()
    per_round_min = math.ceil(timing.min_repeats / timing.rounds)
    per_round_max = math.ceil(timing.max_repeats / timing.rounds)
    per_round_seconds = timing.max_seconds / timing.rounds
    for _ in range(timing.rounds):
        for key, step in steps.items():
            timer, taken = timers[key], timings[key]
            if len(taken.latency_ms) >= timing.max_repeats:
                continue
            with booked(taken, clock, probe):
                step()
                timer.synchronize()
                turn_start, calls = clock(), 0
                while calls < per_round_max and len(taken.latency_ms) < timing.max_repeats and (
                    calls < per_round_min or clock() - turn_start < per_round_seconds
                ):
                    latency_ms, wall_ms = timer(step)
                    taken.latency_ms.append(latency_ms)
                    taken.wall_ms.append(wall_ms)
                    calls += 1
    return timings


# --- a comparison group's latency -----------------------------------------------------------------


@dataclass
class GroupTimings:
    """What timing a comparison group gave each of its cases, by case id."""

    timings: dict[str, Timings]
    l2_flush: bool


def group_flush(timers: list[Timer], rule: str, working_sets: list[int]) -> bool:
    """One L2 flush decision for a whole group, so that a module and its `none` are timed alike: on when
    the smallest working set fits in the cache (that case's repeats could find it warm)."""
    return all([apply_flush_rule(timer, rule, min(working_sets)) for timer in timers])


def time_group(prepared: dict[str, PreparedCase], timing: TimingSpec, clock: Clock) -> GroupTimings:
    """Times the prepared cases of one comparison group: in interleaved rounds when there are several,
    each case on its own timer, all with the same flush decision."""
    timers = {key: make_timer(case.device, clock) for key, case in prepared.items()}
    flushed = group_flush(
        list(timers.values()), timing.l2_flush, [case.prepared.working_set_bytes for case in prepared.values()]
    )
    compiles = any(case.case.compile for case in prepared.values())
    probe = compiled_graphs if compiles else None
    steps = {key: case.step for key, case in prepared.items()}
    if len(steps) == 1:
        (key, step), = steps.items()
        return GroupTimings({key: adaptive_repeats(step, timing, timers[key], clock, probe)}, flushed)
    return GroupTimings(interleaved_repeats(steps, timing, timers, clock, probe), flushed)


def latency_columns(prepared: PreparedCase, timings: Timings, flushed: bool) -> dict[str, Any]:
    """The latency columns of cases.csv, derived from the raw samples."""
    stats: dict[str, Any] = summarize(timings.latency_ms)
    stats["wall_ms_median"] = float(np.median(timings.wall_ms))
    stats["throughput_ips"] = prepared.case.batch_size / (stats["latency_ms_median"] / 1e3)
    stats["l2_flush"] = flushed
    if prepared.case.compile:
        stats["compile_s"] = prepared.prepared.compile_s
        stats["compile_graphs"] = prepared.prepared.graphs + timings.graphs
        stats["graph_breaks"] = prepared.prepared.graph_breaks + timings.graph_breaks
    return stats
