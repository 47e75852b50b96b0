"""Context Encoding for Semantic Segmentation (Zhang et al., CVPR 2018), https://arxiv.org/abs/1803.08904.

Official code: zhanghang1989/PyTorch-Encoding, encoding/models/sseg/encnet.py (`EncModule`) and
encoding/nn/encoding.py (`Encoding`). As there: 1x1 conv C->C (no bias) -> BN -> ReLU -> Encoding layer (K
codewords d_k of dimension C and K smoothing factors s_k, initialised in [-1, 0); position i is assigned to
the codewords by a softmax over s_k·||x_i - d_k||² and each codeword sums the weighted residuals x_i - d_k)
-> BN1d(K) -> ReLU -> mean over the K codewords ->
Linear C->C (bias) -> sigmoid -> out = relu(x + x·gamma), inserted once, in the head after the last stage.

Departures: the SE-loss classifier (`selayer`, a Linear C->classes used only for an auxiliary loss) is left
out, since it needs a class count and is no part of the attention path. The release runs the module on a
512-channel reduction of the last stage; attnbench runs it on the stage output itself. The Encoding layer's
CUDA kernels are replaced by the algebraically equal matmul form ||x||² - 2·x·d + ||d||².
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention


class Encoding(nn.Module):
    """Residual encoding of N C-dimensional features against K learnt codewords -> (B, K, C)."""

    def __init__(self, channels: int, codewords: int):
        super().__init__()
        bound = 1.0 / math.sqrt(codewords * channels)
        self.codewords = nn.Parameter(torch.empty(codewords, channels).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.empty(codewords).uniform_(-1.0, 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x.flatten(2).transpose(1, 2)  # (B, N, C)
        squared_distance = (
            features.pow(2).sum(dim=2, keepdim=True)
            - 2.0 * features @ self.codewords.t()
            + self.codewords.pow(2).sum(dim=1)
        )  # (B, N, K)
        assignment = torch.softmax(squared_distance * self.scale, dim=2)
        # sum_i a_ik (x_i - d_k) = (A^T X)_k - (sum_i a_ik) d_k
        return assignment.transpose(1, 2) @ features - assignment.sum(dim=1)[..., None] * self.codewords


def _encnet_params(channels: int, codewords: int) -> int:
    return 2 * channels**2 + 3 * channels + codewords * channels + 3 * codewords


@attention(
    "encnet",
    paper=Paper(
        "Context Encoding for Semantic Segmentation", "CVPR", 2018, "https://arxiv.org/abs/1803.08904"
    ),
    placement="head",
    params=_encnet_params,
    formula="2·C² + 3·C + K·C + 3·K",
    notes="no SE-loss head",
)
class ContextEncoding(nn.Module):
    """Channel gate from a codebook encoding of all positions; out = relu(x + x·gamma)."""

    def __init__(self, channels: int, codewords: int = 32):
        super().__init__()
        if codewords < 1:
            raise OptionError(f"attention 'encnet': codewords must be a positive integer, got {codewords}")
        self.project = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.encoding = Encoding(channels, codewords)
        self.codeword_bn = nn.BatchNorm1d(codewords)
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = torch.relu(self.codeword_bn(self.encoding(self.project(x))))
        gamma = torch.sigmoid(self.fc(encoded.mean(dim=1)))
        return torch.relu(x + x * gamma[:, :, None, None])
