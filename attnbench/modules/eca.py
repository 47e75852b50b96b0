"""ECA-Net: Efficient Channel Attention (Wang et al., CVPR 2020), https://arxiv.org/abs/1910.03151.

Official code: BangguWu/ECANet, models/eca_module.py. The paper picks the kernel size adaptively from the
channel count (gamma=2, b=1); the released ResNet-50 fixed k = 3, 5, 5, 7 per stage instead. The adaptive
rule is the default because it is what the paper defines; `k_size=` fixes the kernel as the release did.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention


def adaptive_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _eca_kernel(channels: int, k_size: int | None, gamma: int, b: int) -> int:
    return adaptive_kernel_size(channels, gamma, b) if k_size is None else k_size


def _eca_params(channels: int, k_size: int | None, gamma: int, b: int) -> int:
    return _eca_kernel(channels, k_size, gamma, b)


@attention(
    "eca",
    paper=Paper(
        "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
        "CVPR",
        2020,
        "https://arxiv.org/abs/1910.03151",
    ),
    placement="block",
    params=_eca_params,
    formula="k (adaptive: odd nearest |(log2 C + b)/gamma|)",
)
class EfficientChannelAttention(nn.Module):
    """Global average pool -> Conv1d(1, 1, k) across channels -> sigmoid -> scale."""

    def __init__(self, channels: int, k_size: int | None = None, gamma: int = 2, b: int = 1):
        super().__init__()
        kernel = _eca_kernel(channels, k_size, gamma, b)
        if kernel < 1 or kernel % 2 == 0:
            raise OptionError(f"attention 'eca': k_size must be a positive odd integer, got {kernel}")
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.conv(squeezed[:, None, :]))
        return x * gate[:, 0, :, None, None]
