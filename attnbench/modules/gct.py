"""Gated Channel Transformation (Yang et al., CVPR 2020), https://arxiv.org/abs/1909.11519.

Official code: z-x-yang/GCT, PyTorch/GCT.py. l2 mode (the default, as released): the embedding is
alpha·sqrt(sum of x² + eps) per channel, normalised by gamma / sqrt(mean over channels of embedding² + eps);
l1 mode uses alpha·sum|x| and gamma / (mean|embedding| + eps). The gate is 1 + tanh(embedding·norm + beta).
alpha starts at 1 and gamma, beta at 0, so the module is the identity at initialisation. The authors put it
before every convolution, hence the "pre_conv" placement.
"""

from __future__ import annotations

import torch
from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.base import Paper, attention

MODES = ("l2", "l1")


@attention(
    "gct",
    paper=Paper(
        "Gated Channel Transformation for Visual Recognition",
        "CVPR",
        2020,
        "https://arxiv.org/abs/1909.11519",
    ),
    placement="pre_conv",
    params=lambda channels, epsilon, mode: 3 * channels,
    formula="3·C (alpha, gamma, beta)",
)
class GatedChannelTransformation(nn.Module):
    """Global context embedding -> channel normalisation -> 1 + tanh gate -> scale."""

    def __init__(self, channels: int, epsilon: float = 1e-5, mode: str = "l2"):
        super().__init__()
        if mode not in MODES:
            raise OptionError(f"attention 'gct': unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        if epsilon <= 0:
            raise OptionError(
                f"attention 'gct': epsilon must be > 0, got {epsilon}; accepted: a small positive float"
            )
        self.epsilon = epsilon
        self.mode = mode
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            embedding = (x.pow(2).sum(dim=(2, 3), keepdim=True) + self.epsilon).sqrt() * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.epsilon).sqrt()
        else:
            embedding = x.abs().sum(dim=(2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (embedding.abs().mean(dim=1, keepdim=True) + self.epsilon)
        return x * (1.0 + torch.tanh(embedding * norm + self.beta))
