"""The attention zoo: one file per family, each class registered with its paper and parameter formula."""

from attnbench.modules.base import ATTENTION, BASELINE, AttentionSpec, Paper, attention, get_attention

# Importing the family files fills the registry.
from attnbench.modules import bam, cbam, coord, eca, fca, gct, rcan, scse, se, sk, srm  # noqa: E402,F401

__all__ = ["ATTENTION", "BASELINE", "AttentionSpec", "Paper", "attention", "get_attention"]
