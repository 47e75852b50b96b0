"""RCAN channel attention (Zhang et al., ECCV 2018), https://arxiv.org/abs/1807.02758.

Official code: yulunzhang/RCAN, RCAN_TrainCode/code/model/rcan.py (CALayer): SE built from 1x1 convolutions
that carry biases, applied to the globally average-pooled map.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.modules.base import Paper, attention, hidden_units


def _rcan_params(channels: int, reduction: int) -> int:
    hidden = channels // reduction
    return 2 * channels * hidden + hidden + channels


@attention(
    "rcan",
    paper=Paper(
        "Image Super-Resolution Using Very Deep Residual Channel Attention Networks",
        "ECCV",
        2018,
        "https://arxiv.org/abs/1807.02758",
    ),
    placement="block",
    params=_rcan_params,
    formula="2·C²/r + C/r + C",
)
class RCANChannelAttention(nn.Module):
    """Global average pool -> 1x1 conv C->C/r -> ReLU -> 1x1 conv C/r->C -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = hidden_units(channels, reduction, "rcan")
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv_du(x.mean(dim=(2, 3), keepdim=True)))
