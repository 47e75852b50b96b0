"""BAM: Bottleneck Attention Module (Park et al., BMVC 2018), https://arxiv.org/abs/1807.06514.

Official code: Jongchan/attention-module, MODELS/bam.py. Channel branch: global average pool -> Linear
C->C/r (bias) -> BatchNorm1d -> ReLU -> Linear C/r->C (bias). Spatial branch: 1x1 conv C->C/r -> BN -> ReLU,
two 3x3 convs with dilation 4 (each + BN + ReLU), 1x1 conv C/r->1, all convs biased. The output is
x·(1 + sigmoid(channel ⊙ spatial)). The paper writes the branches' sum; the released code multiplies them,
and the product is the default because the published models were trained with it; `combine="sum"` gives
the paper's form. The release average-pools with a square H x H window, which only works on square maps;
the global mean here is the same on square maps and also defined on non-square ones. The paper puts BAM
between stages (after layer1, layer2, layer3), hence the "between_stages" placement.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention, conv_bn_relu, hidden_units

COMBINE = ("product", "sum")


def _bam_params(channels: int, reduction: int, dilation: int, combine: str) -> int:
    h = channels // reduction
    channel_branch = 2 * channels * h + h + channels + 2 * h
    spatial_branch = channels * h + h + 2 * h + 2 * (9 * h * h + h + 2 * h) + h + 1
    return channel_branch + spatial_branch


@attention(
    "bam",
    paper=Paper("BAM: Bottleneck Attention Module", "BMVC", 2018, "https://arxiv.org/abs/1807.06514"),
    placement="between_stages",
    params=_bam_params,
    formula="3·C·h + 18·h² + 13·h + C + 1, h = C/r",
)
class BottleneckAttention(nn.Module):
    """x · (1 + sigmoid(channel(x) ⊙ spatial(x))), or the sum of the branches with combine='sum'."""

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4, combine: str = "product"):
        super().__init__()
        if combine not in COMBINE:
            accepted = ", ".join(COMBINE)
            raise OptionError(f"attention 'bam': unknown combine {combine!r}; accepted: {accepted}")
        if dilation < 1:
            raise OptionError(
                f"attention 'bam': dilation must be a positive integer, got {dilation}; accepted: 1 or more"
            )
        hidden = hidden_units(channels, reduction, "bam")
        self.combine = combine
        self.channel = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
        )
        self.spatial = nn.Sequential(
            *conv_bn_relu(channels, hidden, 1, bias=True),
            *conv_bn_relu(hidden, hidden, 3, dilation=dilation, bias=True),
            *conv_bn_relu(hidden, hidden, 3, dilation=dilation, bias=True),
            nn.Conv2d(hidden, 1, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = self.channel(x.mean(dim=(2, 3)))[:, :, None, None]
        spatial = self.spatial(x)
        mixed = channel * spatial if self.combine == "product" else channel + spatial
        return x * (1.0 + torch.sigmoid(mixed))
