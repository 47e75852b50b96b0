"""Global Second-order Pooling Convolutional Networks (Gao et al., CVPR 2019),
https://arxiv.org/abs/1811.12006

Official code: ZilinGao/Global-Second-order-Pooling-Convolutional-Networks, torchvision/models/resnet.py
(`Bottleneck.chan_att`, the default GSoP-Net1 channel mode). As there: ReLU -> 1x1 conv C->d (bias) -> BN ->
ReLU -> covariance (d x d) -> BN over the d rows -> row-wise conv (d groups, kernel (d, 1), 4d outputs, bias)
-> 1x1 conv 4d->C (bias) -> sigmoid -> scale, inserted after bn3 of the last block of every stage.

Departures: the release strides the reduction conv by 2 in the first stage (`planes <= 64`); a module
only sees its channel count, so by default (`dr_stride=None`) it strides by 2 at C <= 256, which is the
first stage of ResNet-50/101 (the only backbones released) but also the first three stages of a
BasicBlock ResNet; pass `dr_stride=1` or `2` to fix it. The covariance subtracts the mean instead of
multiplying by MPN-COV's (H·W) x (H·W) centring matrix: the same values at O(H·W) instead of O((H·W)²) cost.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention
from attnbench.modules.covariance import covariance_pool

FIRST_STAGE_MAX_CHANNELS = 256
"""Bottleneck output channels of ResNet-50's first stage, where the release strides the reduction by 2."""


def _gsop_params(channels: int, att_dim: int, dr_stride: int | None) -> int:
    reduce = channels * att_dim + att_dim + 2 * att_dim  # 1x1 conv with bias, BatchNorm
    row_conv = 2 * att_dim + 4 * att_dim * att_dim + 4 * att_dim  # row BatchNorm, grouped conv with bias
    expand = 4 * att_dim * channels + channels
    return reduce + row_conv + expand


@attention(
    "gsop",
    paper=Paper(
        "Global Second-order Pooling Convolutional Networks",
        "CVPR",
        2019,
        "https://arxiv.org/abs/1811.12006",
    ),
    placement="stage_end",
    params=_gsop_params,
    formula="C·(5d+1) + 4d² + 9d (641·C + 66,688 at att_dim d=128)",
    notes="reduction conv strided by 2 at C <= 256 unless dr_stride is given",
    min_spatial=3,  # 3x3 keeps 2x2 positions after the stride-2 reduction; one position has no covariance
)
class GlobalSecondOrderPooling(nn.Module):
    """Channel attention from the covariance of a d-channel reduction of x."""

    def __init__(self, channels: int, att_dim: int = 128, dr_stride: int | None = None):
        super().__init__()
        if att_dim < 1:
            raise OptionError(f"attention 'gsop': att_dim must be a positive integer, got {att_dim}")
        if dr_stride is None:
            dr_stride = 2 if channels <= FIRST_STAGE_MAX_CHANNELS else 1
        if dr_stride < 1:
            raise OptionError(
                f"attention 'gsop': dr_stride must be a positive integer or None, got {dr_stride}"
            )
        self.reduce = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, att_dim, kernel_size=1, stride=dr_stride),
            nn.BatchNorm2d(att_dim),
            nn.ReLU(inplace=True),
        )
        self.row_bn = nn.BatchNorm2d(att_dim)
        self.row_conv = nn.Conv2d(att_dim, 4 * att_dim, kernel_size=(att_dim, 1), groups=att_dim)
        self.expand = nn.Conv2d(4 * att_dim, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        covariance = covariance_pool(self.reduce(x))  # (B, d, d)
        rows = self.row_bn(covariance[..., None])  # each row of the covariance is one BN channel
        gate = torch.sigmoid(self.expand(self.row_conv(rows)))
        return x * gate
