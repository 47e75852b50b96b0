"""What a runtime is: a registered builder that turns the case's model and input into the callable the
timers time, with what it made of the model, and the cases it can run (devices, dtypes, modes).

A runtime's `build(model, inputs, case, timing)` receives the prepared model (on its device, in its stored
dtype, eval or train mode set by the step) and the case's input batch, and returns a `Built`: the callable,
called with the case's inputs as the model would be, and its facts (graph node counts, settings). Export
and optimization happen inside `build`, which prepare_step times into `runtime_build_s`, never into the
samples. The runtime's output on the case's input is then compared with eager PyTorch's (check.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attnbench.registry import Registry

if TYPE_CHECKING:
    from attnbench.config import CaseSpec, TimingSpec

EAGER = "eager"
"""The reference runtime: the model as PyTorch runs it, op by op."""
DEPLOY_EXTRA = "pip install -e '.[deploy]'"


def _as_tensor(output: Any) -> torch.Tensor:
    return output


@dataclass
class Built:
    """What a runtime made of a case's model."""

    call: Callable[..., Any]
    """Called with the case's inputs, as the model is; what it returns is the runtime's output."""
    facts: dict[str, Any] = field(default_factory=dict)
    """Columns of the case's row: graph_nodes, optimized_nodes, runtime_settings. Filled during the first
    call by runtimes that compile then (inductor)."""
    output: Callable[[Any], torch.Tensor] = _as_tensor
    """The call's result as a tensor, for the comparison with eager's output."""
    compiles_on_first_call: bool = False
    """The first call builds (torch.compile): prepare_step makes it, inside the build time."""
    keep: tuple = ()
    """What the call needs alive without referring to it: an engine, tensors bound by address."""


Build = Callable[[nn.Module, tuple, "CaseSpec", "TimingSpec"], Built]
Check = Callable[["CaseSpec", "TimingSpec"], "str | None"]


@dataclass(frozen=True)
class RuntimeSpec:
    """A registered runtime and the cases it can run."""

    name: str
    build: Build
    description: str
    dtypes: dict[str, tuple[str, ...]]
    """Device type -> the dtypes benchmarked there; a device missing here is not supported."""
    dtype_note: str = ""
    """Why the other dtypes are left out, for the skip reason."""
    modes: tuple[str, ...] = ("eval",)
    requires: tuple[str, ...] = ()
    """Python modules the runtime imports."""
    extra: str | None = None
    """The attnbench extra that installs `requires`: asking for the runtime without it is an error when the
    suite loads. None: not an extra (TensorRT), so its cases are skipped with `install` as the reason."""
    install: str = ""
    torch_step: bool = False
    """The step runs PyTorch operators (eager, inductor): inference_mode and autocast around a forward, or a
    train step. Otherwise the step is the bare call, which feeds the runtime its own input."""
    dynamo: bool = False
    """Compiles with dynamo: the group's compiler state is reset, and graphs and breaks are counted."""
    channels_last: bool = True
    checks: tuple[Check, ...] = ()
    """Further reasons a case cannot run (a missing compiler, a provider, a CPU capability)."""
    build_estimate_s: dict[str, float] = field(default_factory=dict)
    """Typical seconds of `build` per case at 224 px by device type, for the run's estimate."""

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def unsupported(self, case: CaseSpec, timing: TimingSpec) -> str | None:
        """Why this runtime cannot run `case` here, or None."""
        missing = self.missing()
        if missing:
            how = DEPLOY_EXTRA if self.extra else self.install
            return f"runtime {self.name!r} needs {', '.join(missing)}, which is not installed: {how}"
        device = case.device.split(":")[0]
        if device not in self.dtypes:
            return f"runtime {self.name!r} runs on {' and '.join(self.dtypes)}, not {device}"
        if case.dtype not in self.dtypes[device]:
            note = f" ({self.dtype_note})" if self.dtype_note else ""
            return f"runtime {self.name!r} on {device} runs {', '.join(self.dtypes[device])}, not {case.dtype}{note}"
        if case.mode not in self.modes:
            return (f"runtime {self.name!r} runs inference only (mode eval); "
                    "training steps are measured in eager and inductor")
        if case.channels_last and not self.channels_last:
            return (f"channels_last is a PyTorch memory format; {self.name} takes an NCHW input and chooses its "
                    "own layouts")
        return next((reason for check in self.checks if (reason := check(case, timing))), None)


RUNTIMES: Registry[RuntimeSpec] = Registry("runtime")
"""Runtimes by name, in registration order (eager, inductor, onnxruntime, openvino, tensorrt)."""


def runtime(name: str, **spec: Any) -> Callable[[Build], Build]:
    """Registers a build function as the runtime `name`."""

    def register(build: Build) -> Build:
        RUNTIMES.add(name, RuntimeSpec(name=name, build=build, **spec))
        return build

    return register


def runtime_of(case: CaseSpec) -> RuntimeSpec:
    return RUNTIMES.get(case.runtime)


def uses_dynamo(case: CaseSpec) -> bool:
    """Whether the case compiles with dynamo (its graphs and breaks are counted, its group's state reset)."""
    return runtime_of(case).dynamo


def runs_torch_ops(case: CaseSpec) -> bool:
    """Whether the case's step dispatches PyTorch operators, which the CPU memory probe and the profiler's
    operator counts see; a deployment runtime's work happens inside one opaque call."""
    return runtime_of(case).torch_step


def threads() -> int:
    """The suite's CPU threads: configure_process applies attnbench.toml's `threads` to torch in every
    process that runs cases, and the runtimes take the same number."""
    return torch.get_num_threads()
