"""Selective Kernel convolution (Li et al., CVPR 2019), https://arxiv.org/abs/1903.06586.

Official release: implus/SKNet, models/sknet50.prototxt (Caffe). SK replaces the 3x3 grouped conv of a
ResNeXt bottleneck, so it is not a gate on an existing tensor (gate=False) and takes the block's stride.
Two branches, a 3x3 grouped conv and a 3x3 grouped conv with dilation 2 (the release's stand-in for 5x5),
each bias-free + BN + ReLU, are summed, pooled, squeezed by a bias-free 1x1 conv C->d + BN + ReLU
(d = max(C/r, min_dim)) and expanded by a bias-free 1x1 conv d->2C; a softmax across the two branches
weights their sum.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention, conv_bn_relu


def _sk_dim(channels: int, reduction: int, min_dim: int) -> int:
    return max(channels // reduction, min_dim)


def _sk_params(channels: int, stride: int, groups: int, reduction: int, min_dim: int) -> int:
    d = _sk_dim(channels, reduction, min_dim)
    branch = 9 * channels * (channels // groups) + 2 * channels
    return 2 * branch + channels * d + 2 * d + 2 * channels * d


@attention(
    "sk",
    paper=Paper("Selective Kernel Networks", "CVPR", 2019, "https://arxiv.org/abs/1903.06586"),
    placement="replace_conv3x3",
    params=_sk_params,
    formula="2·(9·C²/g + 2·C) + 3·C·d + 2·d, d = max(C/r, min_dim)",
    notes="replaces the bottleneck's 3x3 conv",
    gate=False,
)
class SelectiveKernel(nn.Module):
    """Two dilated grouped 3x3 branches fused by a softmax attention across branches."""

    def __init__(self, channels: int, stride: int = 1, groups: int = 32, reduction: int = 16, min_dim: int = 32):
        super().__init__()
        if groups < 1 or channels % groups:
            raise OptionError(
                f"attention 'sk': groups={groups} does not divide {channels} channels; "
                f"accepted: a positive divisor of {channels}"
            )
        for name, value in (("stride", stride), ("reduction", reduction), ("min_dim", min_dim)):
            if value < 1:
                raise OptionError(
                    f"attention 'sk': {name} must be a positive integer, got {value}; accepted: 1 or more"
                )
        d = _sk_dim(channels, reduction, min_dim)
        self.branches = nn.ModuleList(
            conv_bn_relu(channels, channels, 3, stride=stride, dilation=dilation, groups=groups, bias=False)
            for dilation in (1, 2)
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, d, kernel_size=1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
        )
        self.select = nn.Conv2d(d, 2 * channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.stack([branch(x) for branch in self.branches], dim=1)  # N, 2, C, H, W
        pooled = features.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        logits = self.select(self.fuse(pooled))  # N, 2C, 1, 1
        weights = torch.softmax(logits.unflatten(1, (2, -1)), dim=1)  # N, 2, C, 1, 1
        return (features * weights).sum(dim=1)
