"""Eager PyTorch: the model called op by op, as trained; every other runtime is compared with it."""

from __future__ import annotations

from torch import nn

from attnbench.config import CPU_DTYPES, DTYPES, MODES, CaseSpec, TimingSpec
from attnbench.runtimes.base import EAGER, Built, runtime


@runtime(
    EAGER, description="the model as PyTorch runs it, operator by operator (the reference)",
    dtypes={"cpu": CPU_DTYPES, "cuda": DTYPES}, modes=MODES, torch_step=True,
)
def build_eager(model: nn.Module, inputs: tuple, case: CaseSpec, timing: TimingSpec) -> Built:
    return Built(model)
