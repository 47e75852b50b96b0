"""Attention modules that kill their own process, for the isolation tests.

Imported by the test and, through the runner's `defining_modules`, by the spawned worker; `register`
is idempotent so a test can remove the entries again and re-add them later.
"""

from __future__ import annotations

import ctypes
import os

import torch
from torch import nn

from attnbench.modules import ATTENTION
from attnbench.modules.base import Paper, attention

EXIT_CODE = 3


class ExitingAttention(nn.Module):
    """Leaves the process with os._exit: no exception, no cleanup, no result sent."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        os._exit(EXIT_CODE)


class SegfaultingAttention(nn.Module):
    """Reads address 0: the process dies of SIGSEGV."""

    def __init__(self, channels: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctypes.string_at(0)
        return x


CRASHING = {"crash_exit": ExitingAttention, "crash_segv": SegfaultingAttention}


def register() -> None:
    for key, cls in CRASHING.items():
        if key not in ATTENTION:
            attention(
                key, paper=Paper("test helper", "none", 2026, "about:blank"), placement="block",
                params=lambda channels: 0, formula="0",
            )(cls)


register()
