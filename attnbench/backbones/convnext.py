"""torchvision ConvNeXt-T: a modern CNN without attention of its own, at the block placement.

`features` holds the stem (4x4 stride-4 conv, LayerNorm2d), then stages (Sequentials of CNBlock) at odd
indices, each but the first after a downsampling layer (LayerNorm2d, 2x2 stride-2 conv). A CNBlock's
`block` Sequential is [7x7 depthwise conv, permute to NHWC, LayerNorm, Linear C->4C, GELU, Linear 4C->C,
permute to NCHW]; its forward multiplies that by a learnt per-channel layer scale, applies stochastic depth
and adds the input.

A gate goes at the end of `block`: it receives the branch's NCHW output (a channels-last strided view,
which every module accepts), and the layer scale, initialised to 1e-6, applies after it, so the gate sees
activations at their natural scale rather than shrunk ones. No NCHW tensor in the block is wider than C
(the 4C expansion happens channels-last, in the MLP), so Coordinate Attention's `expanded` placement falls
back to `block`, as in ResNets.
"""

from __future__ import annotations

from torch import nn
from torchvision import models
from torchvision.models.convnext import CNBlock

from attnbench.backbones.base import ModuleFactory, Site, backbone, placement, placement_fallback
from attnbench.backbones.insert import at_the_end, before_every_conv

CONVNEXT = "convnext"


@backbone("convnext_tiny", family=CONVNEXT)
def convnext_tiny() -> nn.Module:
    return models.convnext_tiny(weights=None)


placement_fallback("expanded", family=CONVNEXT, use="block")


def _stage_of(path: str) -> str:
    """features.1 is stage1; features.2k (a downsampling layer) and features.2k+1 are stage k+1."""
    index = int(path.split(".")[1])
    return "stem" if index == 0 else f"stage{index // 2 + 1}"


@placement("block", CONVNEXT)
def convnext_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """At the end of every CNBlock's branch (NCHW again), before layer scale and the residual addition."""
    blocks = [(path, block) for path, block in model.named_modules() if isinstance(block, CNBlock)]
    sites = []
    for path, block in blocks:
        channels = block.block[0].in_channels
        module = make(channels)
        block.block.append(module)
        sites.append(Site(f"{path}.block.{len(block.block) - 1}", _stage_of(path), channels, module))
    return sites


@placement("head", CONVNEXT)
def convnext_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the last stage, before global pooling and the final LayerNorm."""
    return at_the_end(model, "features", model.classifier[-1].in_features, make)


@placement("pre_conv", CONVNEXT)
def convnext_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution: the stem, each block's depthwise conv and the downsampling convs (the
    pointwise layers are Linear, channels-last, and get none)."""
    return before_every_conv(model, make, _stage_of)
