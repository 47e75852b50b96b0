"""SRM: Style-based Recalibration Module (Lee et al., ICCV 2019), https://arxiv.org/abs/1903.10829.

Official code: hyunjaelee410/style-based-recalibration-module, models/recalibration_modules.py. Style pooling
takes each channel's mean and its unbiased standard deviation (torch's `std`, no epsilon: the default
`eps=0.0` keeps that); `eps=1e-5` puts an epsilon under the square root as the description in
docs/MODULES.md does, which keeps the gradient finite on constant channels. Style integration is a
channel-wise fully connected layer (a C x 2 weight, zero-initialised, no bias) followed by BatchNorm2d and a
sigmoid. An unbiased deviation needs two positions, so inputs must be at least 2x2 here.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention


@attention(
    "srm",
    paper=Paper(
        "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
        "ICCV",
        2019,
        "https://arxiv.org/abs/1903.10829",
    ),
    placement="block",
    params=lambda channels, eps: 4 * channels,
    formula="4·C (2·C CFC weights + 2·C BatchNorm)",
    notes="needs H·W > 1 (unbiased std)",
    min_spatial=2,
)
class StyleRecalibration(nn.Module):
    """[mean, std] per channel -> channel-wise FC -> BatchNorm -> sigmoid -> scale."""

    def __init__(self, channels: int, eps: float = 0.0):
        super().__init__()
        if eps < 0:
            raise OptionError(
                f"attention 'srm': eps must be >= 0, got {eps}; accepted: 0.0 (release) or a small positive float"
            )
        self.eps = eps
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        mean = flat.mean(dim=2)
        std = (flat.var(dim=2) + self.eps).sqrt() if self.eps else flat.std(dim=2)
        z = mean * self.cfc[:, 0] + std * self.cfc[:, 1]
        return x * torch.sigmoid(self.bn(z[:, :, None, None]))
