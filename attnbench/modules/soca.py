"""Second-order Attention Network for Single Image Super-Resolution (Dai et al., CVPR 2019), SOCA layer,
https://openaccess.thecvf.com/content_CVPR_2019/html/Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html

Official code: daitao/SAN, TrainCode/model/san.py (`SOCA`). As there: covariance pooling -> matrix square root
by Newton-Schulz iterations (5, with trace pre-normalisation and post-compensation) -> mean over the rows ->
1x1 conv C->C/r (bias) -> ReLU -> 1x1 conv C/r->C (bias) -> sigmoid -> scale.

Large inputs: SAN centre-crops the map to at most 1000 x 1000 positions before the covariance, to bound its
cost on super-resolution images; `max_size` keeps that crop (1000 by default; each side is cropped on its
own, where the release indexes out of range when one side equals 1000 exactly). Benchmark inputs are far
below it. One position has no covariance, so the module needs H, W >= 2; a zero trace gives a zero root
instead of NaN (see `newton_schulz_sqrt`). The `SOCA` class defaults to r=8, but SAN passes its `reduction`
option and the paper sets r=16, the default here.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention, hidden_units
from attnbench.modules.covariance import covariance_pool, newton_schulz_sqrt


def _soca_params(channels: int, reduction: int, iterations: int, max_size: int) -> int:
    hidden = channels // reduction
    return 2 * channels * hidden + hidden + channels


def centre_crop(x: torch.Tensor, max_size: int) -> torch.Tensor:
    """The central window of at most max_size x max_size positions."""
    height, width = x.shape[2:]
    top = max(height - max_size, 0) // 2
    left = max(width - max_size, 0) // 2
    return x[:, :, top : top + max_size, left : left + max_size]


@attention(
    "soca",
    paper=Paper(
        "Second-order Attention Network for Single Image Super-Resolution",
        "CVPR",
        2019,
        "https://openaccess.thecvf.com/content_CVPR_2019/html/"
        "Dai_Second-Order_Attention_Network_for_Single_Image_Super-Resolution_CVPR_2019_paper.html",
    ),
    placement="block",
    params=_soca_params,
    formula="2·C²/r + C/r + C",
    notes="covariance over at most max_size x max_size central positions",
    min_spatial=2,
)
class SecondOrderChannelAttention(nn.Module):
    """Channel gate from the row means of the covariance's matrix square root."""

    def __init__(self, channels: int, reduction: int = 16, iterations: int = 5, max_size: int = 1000):
        super().__init__()
        hidden = hidden_units(channels, reduction, "soca")
        if iterations < 1:
            raise OptionError(f"attention 'soca': iterations must be a positive integer, got {iterations}")
        if max_size < 2:
            raise OptionError(f"attention 'soca': max_size must be an integer >= 2, got {max_size}")
        self.iterations = iterations
        self.max_size = max_size
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        root = newton_schulz_sqrt(covariance_pool(centre_crop(x, self.max_size)), self.iterations)
        pooled = root.mean(dim=1)[:, :, None, None]
        return x * torch.sigmoid(self.conv_du(pooled))
