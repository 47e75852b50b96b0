"""Test-only plugin: an SE block that sleeps in its forward, to prove end to end that the gate fails a
run made slower on purpose. Loaded through `plugins = ["slow_attention"]` in a test's attnbench.toml,
so the real module registry never carries it.

SLOW_ATTENTION_FACTOR in the environment multiplies the sleep: the same case (same options, same case
key) made slower, as a code change would make it."""

from __future__ import annotations

import os
import time

import torch

from attnbench.modules import attention, get_attention
from attnbench.modules.se import SqueezeExcite

SE = get_attention("se")


@attention(
    "slow_se",
    paper=SE.paper,
    placement=SE.placement,
    params=lambda channels, delay_ms, **se_options: SE.params(channels, **se_options),
    formula=SE.formula,
    notes="test-only: SE plus a sleep of delay_ms per call",
)
class SlowSqueezeExcite(SqueezeExcite):
    def __init__(self, channels: int, reduction: int = 16, bias: bool = False, delay_ms: float = 0.0):
        super().__init__(channels, reduction, bias)
        self.delay_s = delay_ms / 1e3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay_s * float(os.environ.get("SLOW_ATTENTION_FACTOR", "1")))
        return super().forward(x)
