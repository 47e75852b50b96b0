"""A prepared case: the model on its device and memory format, its input, its step (eval forward or train
step, under the case's autocast, through the case's runtime) and optimizer, built once per case and
handed to every metric, so that nothing is built, compiled or exported twice."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attnbench.backbones import BuiltModel, Site
from attnbench.config import CaseSpec, TimingSpec
from attnbench.errors import DeviceError
from attnbench.runtimes import EAGER, OutputMismatch, compare, runtime_of
from attnbench.seeds import random_input

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
def _runtime_unsupported(case: CaseSpec, timing: TimingSpec) -> str | None:
    """What the case's runtime cannot run here: a device, dtype or mode, a package or compiler missing."""
    return runtime_of(case).unsupported(case, timing)


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
    """A step ready to time: its runtime built (compiled, exported, optimized) and checked against eager."""

    step: Step
    optimizer: torch.optim.Optimizer | None
    working_set_bytes: int
    runtime: dict[str, Any] = field(default_factory=dict)
    """The runtime columns of the case's row: runtime_build_s, the differences from eager's output,
    graph_nodes, optimized_nodes, runtime_settings (attnbench.runtimes)."""
    graphs: int = 0
    graph_breaks: int = 0
    """Graphs dynamo compiled and graph breaks it met while preparing (the compiling first call)."""
    warm: bool = False
    """The step has run since it was built (a compiling first call, timing's warm-up): lazy initialisation
    and algorithm search are behind it."""


def prepare_step(
    case: CaseSpec, module: nn.Module, inputs: tuple, device: torch.device, timing: TimingSpec, clock: Clock,
    optimize: bool,
) -> PreparedStep:
    """The case's step around `module` (a whole network with `optimize`, a single module without), run by
    the case's runtime. Building the runtime (export, optimization; for torch.compile the first, compiling
    call) is timed into runtime_build_s here, so it never reaches the samples. In eval mode the runtime's
    output is then compared with eager's on the same input (runtimes.check): beyond the tolerance the case
    fails with the differences."""
    check_supported(case, timing)
    runtime = runtime_of(case)
    module.train(case.mode == "train")
    autocast = autocast_context(case, timing, device)
    reference = None
    if case.mode == "eval" and runtime.name != EAGER:
        with torch.inference_mode(), autocast:
            reference = module(*inputs)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3) if optimize and case.mode == "train" else None
    tensors = [*module.parameters(), *module.buffers(), *(t for t in inputs if isinstance(t, torch.Tensor))]
    working_set = sum(t.numel() * t.element_size() for t in tensors)
    graphs, breaks = compiled_graphs() if runtime.dynamo else (0, 0)
    synchronize(device)
    start = clock()
    built = runtime.build(module, inputs, case, timing)
    if runtime.torch_step:
        step = MODE_STEPS[case.mode](module, built.call, inputs, autocast, optimizer)
    else:
        def step() -> None:
            built.call(*inputs)
    if built.compiles_on_first_call:
        step()
    synchronize(device)
    prepared = PreparedStep(step, optimizer, working_set, warm=built.compiles_on_first_call)
    if runtime.name != EAGER:
        prepared.runtime["runtime_build_s"] = clock() - start
    if runtime.dynamo:
        after = compiled_graphs()
        prepared.graphs, prepared.graph_breaks = after[0] - graphs, after[1] - breaks
    prepared.runtime.update(built.facts)
    if reference is not None:
        with torch.inference_mode(), autocast:
            output = built.output(built.call(*inputs))
        try:
            prepared.runtime.update(compare(reference, output, runtime.name, case.dtype, device))
        except OutputMismatch as mismatch:
            mismatch.columns = {**prepared.runtime, **mismatch.columns}  # the row shows what was built
            raise
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
    if case.mode == "train" or dtype != torch.float32:
        # Training steps and a dtype conversion change weights in place; the cache's model stays as built,
        # so that the next case of this entry starts from the same float32 weights.
        built = copy.deepcopy(built)
    model = built.model.to(device, dtype=dtype, memory_format=fmt)
    image = random_input((case.batch_size, 3, case.resolution, case.resolution), device, dtype)
    inputs = (image.contiguous(memory_format=fmt),)
    return PreparedCase(case, built, device, inputs, prepare_step(case, model, inputs, device, timing, clock, True))
