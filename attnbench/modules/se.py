"""Squeeze-and-Excitation Networks (Hu et al., CVPR 2018), https://arxiv.org/abs/1709.01507.

Official release: hujie-frank/SENet (Caffe). Its FC layers carry biases; the paper's ablations and the
parameter formula 2·C²/r drop them, so `bias=False` is the default and `bias=True` reproduces the release.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.modules.base import Paper, attention, hidden_units


def _se_params(channels: int, reduction: int, bias: bool) -> int:
    hidden = channels // reduction
    return 2 * channels * hidden + ((hidden + channels) if bias else 0)


@attention(
    "se",
    paper=Paper(
        "Squeeze-and-Excitation Networks", "CVPR", 2018, "https://arxiv.org/abs/1709.01507"
    ),
    placement="block",
    params=_se_params,
    formula="2·C²/r (+ C/r + C with bias)",
)
class SqueezeExcite(nn.Module):
    """Global average pool -> FC C->C/r -> ReLU -> FC C/r->C -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        hidden = hidden_units(channels, reduction, "se")
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.fc2(self.relu(self.fc1(squeezed))))
        return x * gate[:, :, None, None]
