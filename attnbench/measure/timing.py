"""Latency: a timer per device type, warm-up, then repeats adapted to a time budget; raw samples kept.

Every timed repeat yields two numbers: the device time (`latency_ms`: CUDA events on a GPU, the wall
clock on the CPU) and the wall time around the call (`wall_ms`: synchronize + perf_counter), so a
launch-bound case shows as wall time well above device time.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from attnbench.backbones import BuiltModel
from attnbench.config import CaseSpec, TimingSpec
from attnbench.errors import DeviceError
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.stats import summarize
from attnbench.registry import Registry

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Clock = Callable[[], float]
Step = Callable[[], None]


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


TIMERS: Registry[type[Timer]] = Registry("timer")


@TIMERS.register("cpu")
class CpuTimer(Timer):
    """perf_counter around the call: CPU ops run synchronously, so device time is the wall time."""


@TIMERS.register("cuda")
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


def make_timer(context: MeasureContext) -> Timer:
    return TIMERS.get(context.device.type)(context.device, context.clock)


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
    """Raw samples of one timed run, in milliseconds."""

    latency_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)


def adaptive_repeats(step: Step, timing: TimingSpec, timer: Timer, clock: Clock) -> Timings:
    """Warm-up, then at least min_repeats, then more until max_seconds (wall, from after warm-up,
    harness work included) or max_repeats is reached."""
    for _ in range(max(timing.warmup, timer.min_warmup)):
        step()
    timer.synchronize()
    timings = Timings()
    budget_start = clock()
    while len(timings.latency_ms) < timing.max_repeats:
        if len(timings.latency_ms) >= timing.min_repeats and clock() - budget_start >= timing.max_seconds:
            break
        latency_ms, wall_ms = timer(step)
        timings.latency_ms.append(latency_ms)
        timings.wall_ms.append(wall_ms)
    return timings


def interleaved_repeats(
    steps: dict[str, Step], timing: TimingSpec, timers: dict[str, Timer], clock: Clock
) -> dict[str, Timings]:
    """Times several steps in `timing.rounds` rounds, each step taking its turn in every round.

    Each turn starts with one untimed call (the previous step evicted this one's weights from the
    caches), then times at least min_repeats / rounds calls and goes on for max_seconds / rounds, at most
    max_repeats / rounds calls (and max_repeats in all). Over all rounds a step gets what adaptive_repeats
    would give it, but slow drift of the machine is spread over every step instead of landing on
    whichever ran at the wrong moment.
    """
    for key, step in steps.items():
        for _ in range(max(timing.warmup, timers[key].min_warmup)):
            step()
        timers[key].synchronize()
    per_round_min = math.ceil(timing.min_repeats / timing.rounds)
    per_round_max = math.ceil(timing.max_repeats / timing.rounds)
    per_round_seconds = timing.max_seconds / timing.rounds
    timings = {key: Timings() for key in steps}
    for _ in range(timing.rounds):
        for key, step in steps.items():
            timer, taken = timers[key], timings[key]
            if len(taken.latency_ms) >= timing.max_repeats:
                continue
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


# --- what a case cannot run -----------------------------------------------------------------------

SkipRule = Callable[[CaseSpec, TimingSpec], "str | None"]
SKIP_RULES: list[SkipRule] = []


def skip_rule(rule: SkipRule) -> SkipRule:
    SKIP_RULES.append(rule)
    return rule


@skip_rule
def _float16_on_cpu(case: CaseSpec, timing: TimingSpec) -> str | None:
    if case.dtype == "float16" and case.device == "cpu":
        return "float16 autocast is not benchmarked on the CPU (most CPUs have no float16 arithmetic); use bfloat16"
    return None


@skip_rule
def _compile_unsupported(case: CaseSpec, timing: TimingSpec) -> str | None:
    if not case.compile:
        return None
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    cxx = os.environ.get("CXX", "g++")
    if case.device == "cpu" and timing.compile_backend == "inductor" and not shutil.which(cxx):
        return f"torch.compile's inductor backend needs a C++ compiler on the CPU; {cxx!r} not found"
    return None


def unsupported(case: CaseSpec, timing: TimingSpec) -> str | None:
    """Why this case cannot run here, or None."""
    return next((reason for rule in SKIP_RULES if (reason := rule(case, timing))), None)


def check_supported(case: CaseSpec, timing: TimingSpec) -> None:
    reason = unsupported(case, timing)
    if reason:
        raise DeviceError(reason)


# --- steps ----------------------------------------------------------------------------------------


def autocast_context(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """float32 runs as is; float16 and bfloat16 run under autocast, as mixed-precision users run them."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


StepBuilder = Callable[[nn.Module, Callable, tuple, contextlib.AbstractContextManager, bool], Step]
MODE_STEPS: Registry[StepBuilder] = Registry("mode")


@MODE_STEPS.register("eval")
def eval_step(module: nn.Module, runnable: Callable, inputs: tuple, autocast, optimize: bool) -> Step:
    """A forward under inference_mode."""
    module.eval()

    def step() -> None:
        with torch.inference_mode(), autocast:
            runnable(*inputs)

    return step


@MODE_STEPS.register("train")
def train_step(module: nn.Module, runnable: Callable, inputs: tuple, autocast, optimize: bool) -> Step:
    """Forward, backward and (for a whole network) an SGD step; gradients are freed at the end so
    that every call starts from the same memory state."""
    module.train()
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3) if optimize else None
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

    def step() -> None:
        with autocast:
            loss = runnable(*inputs).float().mean()
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        module.zero_grad(set_to_none=True)
        for leaf in leaves:
            leaf.grad = None

    return step


@dataclass
class PreparedStep:
    """A step ready to time: compiled and called once when the case compiles."""

    step: Step
    compile_s: float | None
    working_set_bytes: int


def memory_format(case: CaseSpec) -> torch.memory_format:
    return torch.channels_last if case.channels_last else torch.contiguous_format


def prepare(
    case: CaseSpec, module: nn.Module, inputs: tuple, context: MeasureContext, optimize: bool
) -> PreparedStep:
    """The case's step around `module`; with compile, the first call (compilation) is timed into
    compile_s here, so it never reaches the timed repeats."""
    check_supported(case, context.timing)
    runnable: Callable = module
    if case.compile:
        torch._dynamo.reset()  # a cold compile per case, and no cache-size limit reached across cases
        runnable = torch.compile(module, backend=context.timing.compile_backend, dynamic=False)
    step = MODE_STEPS.get(case.mode)(
        module, runnable, inputs, autocast_context(case.dtype, context.device), optimize
    )
    tensors = [*module.parameters(), *module.buffers(), *(t for t in inputs if isinstance(t, torch.Tensor))]
    working_set = sum(t.numel() * t.element_size() for t in tensors)
    compile_s = None
    if case.compile:
        timer = make_timer(context)
        timer.synchronize()
        start = context.clock()
        step()
        timer.synchronize()
        compile_s = context.clock() - start
    return PreparedStep(step, compile_s, working_set)


def prepare_network(case: CaseSpec, built: BuiltModel, context: MeasureContext) -> PreparedStep:
    """The whole network on the case's device, memory format and input shape."""
    fmt = memory_format(case)
    model = built.model.to(context.device, memory_format=fmt)
    inputs = torch.randn(case.batch_size, 3, case.resolution, case.resolution, device=context.device)
    return prepare(case, model, (inputs.contiguous(memory_format=fmt),), context, optimize=True)


def make_step(case: CaseSpec, built: BuiltModel, device: torch.device, timing: TimingSpec = TimingSpec()) -> Step:
    """The case's step, for metrics that run it their own way (the profiler); compiled when the case is."""
    return prepare_network(case, built, MeasureContext(timing=timing, device=device)).step


def time_step(prepared: PreparedStep, context: MeasureContext) -> tuple[Timings, bool]:
    """Timings of a prepared step and whether the L2 flush was on."""
    timer, flushed = flushing_timer(prepared, context)
    return adaptive_repeats(prepared.step, context.timing, timer, context.clock), flushed


def flushing_timer(prepared: PreparedStep, context: MeasureContext) -> tuple[Timer, bool]:
    timer = make_timer(context)
    return timer, apply_flush_rule(timer, context.timing.l2_flush, prepared.working_set_bytes)


@dataclass
class Pretimed:
    """A case's step and its timings, taken by the runner with other cases interleaved."""

    prepared: PreparedStep
    timings: Timings
    flushed: bool


def time_interleaved(
    prepared: dict[str, PreparedStep], context: MeasureContext
) -> dict[str, Pretimed]:
    """interleaved_repeats over prepared steps keyed by case id, each with its own timer and flush."""
    timers, flushed = {}, {}
    for key, step in prepared.items():
        timers[key], flushed[key] = flushing_timer(step, context)
    steps = {key: step.step for key, step in prepared.items()}
    timings = interleaved_repeats(steps, context.timing, timers, context.clock)
    return {key: Pretimed(prepared[key], timings[key], flushed[key]) for key in prepared}


@metric("latency")
def latency(case: CaseSpec, built: BuiltModel, context: MeasureContext) -> MetricResult:
    pretimed = context.pretimed.pop(case.case_id, None)
    if pretimed is None:
        prepared = prepare_network(case, built, context)
        timings, flushed = time_step(prepared, context)
    else:
        prepared, timings, flushed = pretimed.prepared, pretimed.timings, pretimed.flushed
    stats = summarize(timings.latency_ms)
    stats["wall_ms_median"] = float(np.median(timings.wall_ms))
    stats["throughput_ips"] = case.batch_size / (stats["latency_ms_median"] / 1e3)
    stats["compile_s"] = prepared.compile_s
    stats["l2_flush"] = flushed
    return MetricResult(stats, timings.latency_ms, timings.wall_ms)
