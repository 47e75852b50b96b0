"""Bilinear Attention Networks for Person Retrieval (Fang et al., ICCV 2019),
https://openaccess.thecvf.com/content_ICCV_2019/html/Fang_Bilinear_Attention_Networks_for_Person_Retrieval_ICCV_2019_paper.html

Official code: PengfeiFANGanu/Attention-in-Attention-Networks, models/bilinear_baseline_AIA.py
(`BilinearAttention`). As there: 1x1 conv-BN-ReLU C->m (m = C/16, conv with bias) -> outer product of the
m-vector with itself at every position, keeping the q = m(m+1)/2 entries of the lower triangle, ordered
diagonal by diagonal (main diagonal first) -> one 1x1 conv-BN-ReLU q->C on that map and one on its global
average -> out = sigmoid(product of the two) · x.

Departures: the release forms the full m x m outer product per position and gathers the diagonals; this
multiplies only the q kept pairs, the same channels in the same order. The release inserts one module after
GoogLeNet's inception-3 stage; attnbench uses block placement. Its BatchNorm on the pooled branch sees one
value per channel and sample, so training needs batch > 1, as in the release.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.modules.base import Paper, attention, hidden_units


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """The release's `_dim_change`: 1x1 conv with bias, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _pair_count(channels: int, reduction: int) -> tuple[int, int]:
    mid = channels // reduction
    return mid, mid * (mid + 1) // 2


def _bilinear_params(channels: int, reduction: int) -> int:
    mid, pairs = _pair_count(channels, reduction)
    return (channels * mid + mid + 2 * mid) + 2 * (pairs * channels + channels + 2 * channels)


@attention(
    "bilinear",
    paper=Paper(
        "Bilinear Attention Networks for Person Retrieval",
        "ICCV",
        2019,
        "https://openaccess.thecvf.com/content_ICCV_2019/html/"
        "Fang_Bilinear_Attention_Networks_for_Person_Retrieval_ICCV_2019_paper.html",
    ),
    placement="block",
    params=_bilinear_params,
    formula="(C·m + 3·m) + 2·(q·C + 3·C), m = C/r, q = m(m+1)/2",
)
class BilinearAttention(nn.Module):
    """Gate from second-order (pairwise product) features of a reduced map, spatial times pooled."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        mid = hidden_units(channels, reduction, "bilinear")
        rows, cols = zip(*[(col + offset, col) for offset in range(mid) for col in range(mid - offset)])
        self.register_buffer("rows", torch.tensor(rows), persistent=False)
        self.register_buffer("cols", torch.tensor(cols), persistent=False)
        pairs = len(rows)
        self.reduce = _conv_bn_relu(channels, mid)
        self.spatial = _conv_bn_relu(pairs, channels)
        self.pooled = _conv_bn_relu(pairs, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        products = reduced.index_select(1, self.rows) * reduced.index_select(1, self.cols)
        channel_weights = self.pooled(products.mean(dim=(2, 3), keepdim=True))
        return torch.sigmoid(self.spatial(products) * channel_weights) * x
