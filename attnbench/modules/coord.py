"""Coordinate Attention (Hou et al., CVPR 2021), https://arxiv.org/abs/2103.02907.

Official code: houqb/CoordAttention, coordatt.py. Pooling along each spatial axis keeps position along the
other; the two pooled strips share one 1x1 conv (with bias) -> BatchNorm -> h_swish, then each gets its own
1x1 conv (with bias) and sigmoid. h_swish is x·ReLU6(x + 3)/6, which is torch's nn.Hardswish. The paper puts
the module on the expanded channels of MobileNetV2's inverted residuals, hence the "expanded" placement.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention


def _mip(channels: int, reduction: int, min_mip: int) -> int:
    return max(min_mip, channels // reduction)


def _coord_params(channels: int, reduction: int, min_mip: int) -> int:
    m = _mip(channels, reduction, min_mip)
    return channels * m + m + 2 * m + 2 * (m * channels + channels)


@attention(
    "coord",
    paper=Paper(
        "Coordinate Attention for Efficient Mobile Network Design",
        "CVPR",
        2021,
        "https://arxiv.org/abs/2103.02907",
    ),
    placement="expanded",
    params=_coord_params,
    formula="C·m + 3·m + 2·(m·C + C), m = max(8, C/r)",
)
class CoordAttention(nn.Module):
    """Pool along W and along H -> shared 1x1 conv-BN-h_swish -> per-axis 1x1 conv -> sigmoid -> x·a_h·a_w."""

    def __init__(self, channels: int, reduction: int = 32, min_mip: int = 8):
        super().__init__()
        if reduction < 1 or min_mip < 1:
            raise OptionError(
                f"attention 'coord': reduction={reduction}, min_mip={min_mip}; accepted: positive integers"
            )
        mip = _mip(channels, reduction, min_mip)
        self.conv1 = nn.Conv2d(channels, mip, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(mip, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        along_h = x.mean(dim=3, keepdim=True)  # N, C, H, 1
        along_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # N, C, W, 1
        y = self.act(self.bn1(self.conv1(torch.cat([along_h, along_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))
        return x * a_w * a_h
