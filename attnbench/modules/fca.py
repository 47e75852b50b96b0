"""FcaNet: multi-spectral channel attention (Qin et al., ICCV 2021), https://arxiv.org/abs/2012.11879.

Official code: cfzd/FcaNet, model/layer.py. The channels are split into as many groups as selected
frequencies; each group is pooled with one fixed 2D DCT basis (a buffer, not a parameter), then a bias-free
SE MLP produces the gate. Frequencies are indices in a 7x7 DCT space, scaled by dct_size // 7 so that they
mean the same on a larger grid. The released ResNets size the grid to each stage's feature map at 224 input
(56/28/14/7); a module here does not know its stage, so the default grid is 7x7, the space the indices are
defined on, and larger inputs are average-pooled to it first, which is the release's own path for inputs
whose size differs from the grid. `dct_size=56` (28, 14) reproduces that stage's released filter exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention, hidden_units

# The released ranking of single-frequency accuracy in the 7x7 space (u along H, v along W), best first.
TOP_U = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1)
TOP_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3)
FREQUENCY_SETS = {f"top{n}": n for n in (1, 2, 4, 8, 16, 32)}


def _dct_basis(size: int, frequencies: np.ndarray) -> np.ndarray:
    """Orthonormal 1D DCT-II basis values, shape (len(frequencies), size)."""
    positions = np.arange(size) + 0.5
    basis = np.cos(np.pi * frequencies[:, None] * positions[None, :] / size) / np.sqrt(size)
    return np.where(frequencies[:, None] == 0, basis, basis * np.sqrt(2))


def dct_filters(channels: int, height: int, width: int, count: int) -> torch.Tensor:
    """The (C, H, W) pooling filters: channel group i uses the i-th top frequency, scaled to the grid."""
    u = np.array(TOP_U[:count]) * (height // 7)
    v = np.array(TOP_V[:count]) * (width // 7)
    per_frequency = _dct_basis(height, u)[:, :, None] * _dct_basis(width, v)[:, None, :]
    return torch.from_numpy(np.repeat(per_frequency, channels // count, axis=0)).float()


def _fca_params(channels: int, reduction: int, frequencies: str, dct_size: int) -> int:
    return 2 * channels * (channels // reduction)


@attention(
    "fca",
    paper=Paper(
        "FcaNet: Frequency Channel Attention Networks", "ICCV", 2021, "https://arxiv.org/abs/2012.11879"
    ),
    placement="block",
    params=_fca_params,
    formula="2·C²/r (C divisible by the frequency count, 16)",
)
class FrequencyChannelAttention(nn.Module):
    """Multi-spectral DCT pooling -> FC C->C/r -> ReLU -> FC C/r->C (no biases) -> sigmoid -> scale."""

    def __init__(self, channels: int, reduction: int = 16, frequencies: str = "top16", dct_size: int = 7):
        super().__init__()
        if frequencies not in FREQUENCY_SETS:
            raise OptionError(
                f"attention 'fca': unknown frequencies {frequencies!r}; accepted: {', '.join(FREQUENCY_SETS)}"
            )
        count = FREQUENCY_SETS[frequencies]
        if channels % count:
            raise OptionError(
                f"attention 'fca': {channels} channels do not split into {count} frequency groups; "
                f"accepted: channels divisible by {count}"
            )
        if dct_size < 1:
            raise OptionError(
                f"attention 'fca': dct_size must be a positive integer, got {dct_size}; "
                "accepted: e.g. 7, 14, 28, 56"
            )
        hidden = hidden_units(channels, reduction, "fca")
        self.dct_size = dct_size
        self.register_buffer("dct", dct_filters(channels, dct_size, dct_size, count))
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x
        if x.shape[-2:] != (self.dct_size, self.dct_size):
            pooled = nn.functional.adaptive_avg_pool2d(x, self.dct_size)
        spectrum = (pooled * self.dct).sum(dim=(2, 3))
        return x * torch.sigmoid(self.fc(spectrum))[:, :, None, None]
