"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), https://arxiv.org/abs/1807.06521.

Official code: Jongchan/attention-module, MODELS/cbam.py. As there, the channel gate's shared MLP has biases
and sums its outputs for the average- and max-pooled vectors; the spatial gate pools [max, mean] over channels
and runs a bias-free 7x7 conv followed by BatchNorm2d(1) (momentum 0.01, as in the release's BasicConv).
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention, hidden_units

CBAM_PAPER = Paper(
    "CBAM: Convolutional Block Attention Module", "ECCV", 2018, "https://arxiv.org/abs/1807.06521"
)


def _channel_gate_params(channels: int, reduction: int) -> int:
    hidden = channels // reduction
    return 2 * channels * hidden + hidden + channels


def _spatial_gate_params(kernel_size: int) -> int:
    return 2 * kernel_size**2 + 2


class ChannelGate(nn.Module):
    """Shared MLP over avg- and max-pooled vectors, summed, sigmoid, scale."""

    def __init__(self, channels: int, reduction: int, key: str):
        super().__init__()
        hidden = hidden_units(channels, reduction, key)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3))
        peak = x.amax(dim=(2, 3))
        gate = torch.sigmoid(self.mlp(avg) + self.mlp(peak))
        return x * gate[:, :, None, None]


class SpatialGate(nn.Module):
    """[max, mean] over channels -> k x k conv (2->1, no bias) -> BatchNorm2d(1) -> sigmoid -> scale."""

    def __init__(self, kernel_size: int, key: str):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise OptionError(
                f"attention {key!r}: kernel_size must be a positive odd integer, got {kernel_size}; "
                "accepted: 1, 3, 5, 7, ..."
            )
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


@attention(
    "cbam",
    paper=CBAM_PAPER,
    placement="block",
    params=lambda channels, reduction, kernel_size: _channel_gate_params(channels, reduction)
    + _spatial_gate_params(kernel_size),
    formula="2·C²/r + C/r + C + 2·k² + 2",
)
class CBAM(nn.Module):
    """Channel gate, then spatial gate, applied in sequence."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelGate(channels, reduction, "cbam")
        self.spatial = SpatialGate(kernel_size, "cbam")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


@attention(
    "cbam_channel",
    paper=CBAM_PAPER,
    placement="block",
    params=lambda channels, reduction: _channel_gate_params(channels, reduction),
    formula="2·C²/r + C/r + C",
)
class CBAMChannel(ChannelGate):
    """CBAM's channel attention module (CAM) alone."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__(channels, reduction, "cbam_channel")


@attention(
    "cbam_spatial",
    paper=CBAM_PAPER,
    placement="block",
    params=lambda channels, kernel_size: _spatial_gate_params(kernel_size),
    formula="2·k² + 2",
)
class CBAMSpatial(SpatialGate):
    """CBAM's spatial attention module (SAM) alone."""

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__(kernel_size, "cbam_spatial")
