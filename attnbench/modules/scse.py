"""Concurrent spatial and channel squeeze & excitation (Roy et al., MICCAI 2018), https://arxiv.org/abs/1803.02579.

Official code: ai-med/squeeze_and_excitation, squeeze_and_excitation.py (ChannelSpatialSELayer): cSE is SE
with biased Linear layers at r=2, sSE a biased 1x1 conv to one map and a sigmoid; the two recalibrated
tensors are combined by their element-wise maximum, as the released code does.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.modules.base import Paper, attention, hidden_units


def _scse_params(channels: int, reduction: int) -> int:
    hidden = channels // reduction
    return 2 * channels * hidden + hidden + channels + channels + 1


@attention(
    "scse",
    paper=Paper(
        "Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks",
        "MICCAI",
        2018,
        "https://arxiv.org/abs/1803.02579",
    ),
    placement="block",
    params=_scse_params,
    formula="2·C²/r + C/r + 2·C + 1",
)
class ConcurrentSpatialChannelSE(nn.Module):
    """max(cSE(x), sSE(x))."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        hidden = hidden_units(channels, reduction, "scse")
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)
        self.spatial = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_gate = torch.sigmoid(self.fc2(self.relu(self.fc1(x.mean(dim=(2, 3))))))
        spatial_gate = torch.sigmoid(self.spatial(x))
        return torch.maximum(x * channel_gate[:, :, None, None], x * spatial_gate)
