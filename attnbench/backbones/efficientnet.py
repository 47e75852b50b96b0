"""torchvision EfficientNet-B0 and EfficientNetV2-S, which ship their own squeeze-excitation.

`features` holds the stem conv-BN-SiLU, the stages (Sequentials of MBConv blocks; FusedMBConv in V2's
first three) and a final 1x1 conv-BN-SiLU. An MBConv's `block` Sequential is [1x1 expansion conv-BN-SiLU
(when the expand ratio is not 1), depthwise conv-BN-SiLU, SqueezeExcitation, 1x1 projection conv-BN]; a
FusedMBConv's is [3x3 conv-BN-SiLU, 1x1 projection conv-BN] (the 3x3 alone at expand ratio 1), without SE.
The block's forward runs `block`, then stochastic depth and the residual addition, so policies insert into
`block` and torchvision's forward runs unchanged.

torchvision's SE gates the depthwise conv's output (the expanded channels) and squeezes it to a quarter
of the block's input channels: 96 expanded channels of a 16-channel block squeeze to 4.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models
from torchvision.models.efficientnet import FusedMBConv, MBConv

from attnbench.backbones.base import (
    ModuleFactory,
    Site,
    backbone,
    native_attention,
    placement,
    placement_fallback,
    squeeze_excitation_sites,
)
from attnbench.backbones.insert import at_the_end, before_every_conv

EFFICIENTNET = "efficientnet"


@backbone("efficientnet_b0", family=EFFICIENTNET)
def efficientnet_b0() -> nn.Module:
    return models.efficientnet_b0(weights=None)


@backbone("efficientnet_v2_s", family=EFFICIENTNET)
def efficientnet_v2_s() -> nn.Module:
    return models.efficientnet_v2_s(weights=None)


# A per-block gate takes the place of the SE these networks were designed with; Coordinate Attention's
# `expanded` spot (after the depthwise conv, on the expanded channels) is exactly where that SE sits.
placement_fallback("block", family=EFFICIENTNET, use="native")
placement_fallback("expanded", family=EFFICIENTNET, use="native")


def _stage_of(model: nn.Module) -> Callable[[str], str]:
    """A path's stage: torchvision's stages (features.1 is stage1, ...), or the stem conv, or the final conv."""
    last = len(model.features) - 1

    def stage_of(path: str) -> str:
        index = int(path.split(".")[1])
        return "stem" if index == 0 else "head" if index == last else f"stage{index}"

    return stage_of


def _blocks(model: nn.Module) -> list[tuple[str, MBConv | FusedMBConv]]:
    """(path, block) for every MBConv and FusedMBConv."""
    return [
        (path, block) for path, block in model.named_modules() if isinstance(block, (MBConv, FusedMBConv))
    ]


@native_attention(EFFICIENTNET, where="after each MBConv's depthwise conv")
def efficientnet_native(model: nn.Module) -> list[Site]:
    """torchvision's SqueezeExcitation of every MBConv (FusedMBConv blocks have none)."""
    return squeeze_excitation_sites(model, _stage_of(model))


@placement("block", EFFICIENTNET)
def efficientnet_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the last layer of every block's main branch (the projection BN; a FusedMBConv without expansion
    ends in its 3x3 conv-BN-SiLU), before stochastic depth and the residual addition."""
    stage_of, sites = _stage_of(model), []
    for path, block in _blocks(model):
        channels = block.block[-1].out_channels
        module = make(channels)
        block.block.append(module)
        sites.append(Site(f"{path}.block.{len(block.block) - 1}", stage_of(path), channels, module))
    return sites


@placement("head", EFFICIENTNET)
def efficientnet_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the final 1x1 conv-BN-SiLU, before global pooling."""
    return at_the_end(model, "features", model.features[-1].out_channels, make)


@placement("pre_conv", EFFICIENTNET)
def efficientnet_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution: stem, expansion, depthwise, projection and the final 1x1 conv."""
    return before_every_conv(model, make, _stage_of(model))
