"""A prepared case: the model on its device and memory format, its input, its step (eval forward or train
step, under the case's autocast, compiled when the case compiles) and optimizer, built once per case and
handed to every metric, so that nothing is built or compiled twice."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from attnbench.backbones import BuiltModel, Site
from attnbench.config import CaseSpec, TimingSpec
from attnbench.errors import DeviceError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
Clock = Callable[[], float]
Step = Callable[[], None]


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


def autocasts(case: CaseSpec, timing: TimingSpec) -> bool:
    """Whether the case runs under autocast: a float16/bfloat16 case of a suite with low_precision = autocast."""
    return case.dtype != "float32" and timing.low_precision == "autocast"


def stored_dtype(case: CaseSpec, timing: TimingSpec) -> torch.dtype:
    """The dtype the model and its input are stored in: the case's, when converted; float32 under autocast."""
    return torch.float32 if autocasts(case, timing) else DTYPES[case.dtype]


def autocast_context(case: CaseSpec, timing: TimingSpec, device: torch.device) -> contextlib.AbstractContextManager:
    if not autocasts(case, timing):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[case.dtype])


def memory_format(case: CaseSpec) -> torch.memory_format:
    return torch.channels_last if case.channels_last else torch.contiguous_format


def eval_step(module: nn.Module, runnable: Callable, inputs: tuple, autocast, optimizer) -> Step:
    """A forward under inference_mode."""
    module.eval()

    def step() -> None:
        with torch.inference_mode(), autocast:
            runnable(*inputs)

    return step


def train_step(module: nn.Module, runnable: Callable, inputs: tuple, autocast, optimizer) -> Step:
    """Forward, backward and (for a whole network) an optimizer step; gradients are freed at the end so
    that every call starts from the same memory state."""
    module.train()
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


MODE_STEPS = {"eval": eval_step, "train": train_step}


def compiled_graphs() -> tuple[int, int]:
    """Graphs dynamo has compiled and graph breaks it has met in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


@dataclass
class PreparedStep:
    """A step ready to time: built, compiled and called once when the case compiles."""

    step: Step
    optimizer: torch.optim.Optimizer | None
    compile_s: float | None
    working_set_bytes: int
    graphs: int = 0
    graph_breaks: int = 0
    """Graphs compiled and graph breaks met while preparing (the compiling first call)."""


def prepare_step(
    case: CaseSpec, module: nn.Module, inputs: tuple, device: torch.device, timing: TimingSpec, clock: Clock,
    optimize: bool,
) -> PreparedStep:
    """The case's step around `module` (a whole network with `optimize`, a single module without). With
    compile, the first call (compilation) is timed into compile_s here, so it never reaches the samples."""
    check_supported(case, timing)
    runnable: Callable = module
    if case.compile:
        runnable = torch.compile(module, backend=timing.compile_backend, dynamic=False)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3) if optimize and case.mode == "train" else None
    step = MODE_STEPS[case.mode](module, runnable, inputs, autocast_context(case, timing, device), optimizer)
    tensors = [*module.parameters(), *module.buffers(), *(t for t in inputs if isinstance(t, torch.Tensor))]
    prepared = PreparedStep(step, optimizer, None, sum(t.numel() * t.element_size() for t in tensors))
    if case.compile:
        graphs, breaks = compiled_graphs()
        synchronize(device)
        start = clock()
        step()
        synchronize(device)
        prepared.compile_s = clock() - start
        after = compiled_graphs()
        prepared.graphs, prepared.graph_breaks = after[0] - graphs, after[1] - breaks
    return prepared


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class PreparedCase:
    """One case ready for every metric: its model on the device, input batch and step."""

    case: CaseSpec
    built: BuiltModel
    device: torch.device
    inputs: tuple[torch.Tensor, ...]
    prepared: PreparedStep

    @property
    def model(self) -> nn.Module:
        return self.built.model

    @property
    def sites(self) -> list[Site]:
        return self.built.sites

    @property
    def step(self) -> Step:
        return self.prepared.step


def prepare_case(
    case: CaseSpec, built: BuiltModel, device: torch.device, timing: TimingSpec, clock: Clock
) -> PreparedCase:
    """The whole network on the case's device, dtype (converted, or float32 under autocast), memory format
    and input shape, with its step."""
    fmt, dtype = memory_format(case), stored_dtype(case, timing)
    model = built.model.to(device, dtype=dtype, memory_format=fmt)
    image = torch.randn(case.batch_size, 3, case.resolution, case.resolution, device=device, dtype=dtype)
    inputs = (image.contiguous(memory_format=fmt),)
    return PreparedCase(case, built, device, inputs, prepare_step(case, model, inputs, device, timing, clock, True))
