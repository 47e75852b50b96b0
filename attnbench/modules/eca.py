"""ECA-Net: Efficient Channel Attention (Wang et al., CVPR 2020), https://arxiv.org/abs/1910.03151.

Official code: BangguWu/ECANet, models/eca_module.py. The paper picks the kernel size from the channel count,
k = the odd number nearest |(log2 C + b) / gamma| rounded up (gamma=2, b=1); that rule is the default
because it is what the paper defines. The released models fixed the kernel per stage instead (ECA-Net50
"k3557", ECA-Net101/152 "k3357", ECA-MobileNetV2 "k13": k=1 up to 96 channels, 3 above). `k_size=` takes a
positive odd integer, "adaptive", or the name of a released setting ("resnet50", "resnet101",
"mobilenet_v2"), which picks the released kernel from the channel count at each site.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention


def adaptive_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _per_stage(name: str, kernels: dict[int, int]) -> Callable[[int], int]:
    """A released per-stage setting, keyed by the bottleneck output width of each ResNet stage."""

    def kernel(channels: int) -> int:
        if channels not in kernels:
            widths = ", ".join(str(c) for c in kernels)
            raise OptionError(
                f"attention 'eca': k_size={name!r} is defined for channels {widths}, not {channels}; "
                "accepted there: 'adaptive' or an odd integer"
            )
        return kernels[channels]

    return kernel


RELEASED_KERNELS: dict[str, Callable[[int], int]] = {
    "resnet50": _per_stage("resnet50", {256: 3, 512: 5, 1024: 5, 2048: 7}),
    "resnet101": _per_stage("resnet101", {256: 3, 512: 3, 1024: 5, 2048: 7}),
    "mobilenet_v2": lambda channels: 1 if channels <= 96 else 3,
}


def eca_kernel(channels: int, k_size: int | str, gamma: int, b: int) -> int:
    if k_size == "adaptive":
        return adaptive_kernel_size(channels, gamma, b)
    if isinstance(k_size, str):
        if k_size not in RELEASED_KERNELS:
            accepted = ", ".join(["adaptive", *RELEASED_KERNELS])
            raise OptionError(f"attention 'eca': unknown k_size {k_size!r}; accepted: an odd integer, {accepted}")
        return RELEASED_KERNELS[k_size](channels)
    return k_size


@attention(
    "eca",
    paper=Paper(
        "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
        "CVPR",
        2020,
        "https://arxiv.org/abs/1910.03151",
    ),
    placement="block",
    params=lambda channels, k_size, gamma, b: eca_kernel(channels, k_size, gamma, b),
    formula="k (adaptive: odd |(log2 C + b)/gamma|)",
)
class EfficientChannelAttention(nn.Module):
    """Global average pool -> Conv1d(1, 1, k) across channels (no bias) -> sigmoid -> scale."""

    def __init__(self, channels: int, k_size: int | str = "adaptive", gamma: int = 2, b: int = 1):
        super().__init__()
        kernel = eca_kernel(channels, k_size, gamma, b)
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            accepted = ", ".join(["1, 3, 5, ...", "adaptive", *RELEASED_KERNELS])
            raise OptionError(
                f"attention 'eca': k_size must be a positive odd integer, got {kernel!r}; accepted: {accepted}"
            )
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel, padding=(kernel - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.conv(squeezed[:, None, :]))
        return x * gate[:, 0, :, None, None]
