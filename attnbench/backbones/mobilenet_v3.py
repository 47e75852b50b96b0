"""torchvision MobileNetV3 (large and small), which ships its own squeeze-excitation with a hard-sigmoid gate.

`features` holds the stem conv-BN-hardswish, the InvertedResidual blocks and a final 1x1 conv-BN-hardswish.
A block's `block` Sequential is [1x1 expansion conv-BN-act (when the expanded width differs from the
input), depthwise conv-BN-act, SqueezeExcitation (in the blocks the paper marks SE), 1x1 projection
conv-BN]; the block's forward runs `block` then adds the residual, so policies insert into `block` and
torchvision's forward runs unchanged.

torchvision's SE gates the depthwise conv's output (the expanded channels C), squeezes it to
make_divisible(C / 4, 8) with a ReLU, and gates with hardsigmoid: 72 channels squeeze to 24.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models
from torchvision.models.mobilenetv3 import InvertedResidual

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

MOBILENET_V3 = "mobilenet_v3"


@backbone("mobilenet_v3_large", family=MOBILENET_V3)
def mobilenet_v3_large() -> nn.Module:
    return models.mobilenet_v3_large(weights=None)


@backbone("mobilenet_v3_small", family=MOBILENET_V3)
def mobilenet_v3_small() -> nn.Module:
    return models.mobilenet_v3_small(weights=None)


# As in EfficientNet: a per-block gate, and Coordinate Attention's `expanded` spot, take the SE's place.
placement_fallback("block", family=MOBILENET_V3, use="native")
placement_fallback("expanded", family=MOBILENET_V3, use="native")


def _blocks(model: nn.Module) -> list[tuple[int, str, InvertedResidual]]:
    """(index in features, stage, block) for every InvertedResidual.

    As for MobileNetV2, a stage (`seq<n>`) starts at the first block and at every block without a residual
    connection, where channels or resolution change.
    """
    blocks, stage = [], 0
    for index, layer in enumerate(model.features):
        if isinstance(layer, InvertedResidual):
            stage += not blocks or not layer.use_res_connect
            blocks.append((index, f"seq{stage}", layer))
    return blocks


def _stage_of(model: nn.Module) -> Callable[[str], str]:
    stages = {f"features.{index}": stage for index, stage, _ in _blocks(model)}

    def stage_of(path: str) -> str:
        prefix = ".".join(path.split(".")[:2])
        return stages.get(prefix, "stem" if prefix == "features.0" else "head")

    return stage_of


@native_attention(MOBILENET_V3, where="after the depthwise conv of SE blocks")
def mobilenet_v3_native(model: nn.Module) -> list[Site]:
    """torchvision's SqueezeExcitation, in the blocks whose configuration asks for one."""
    return squeeze_excitation_sites(model, _stage_of(model))


@placement("block", MOBILENET_V3)
def mobilenet_v3_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the projection BatchNorm of every InvertedResidual, before the residual addition."""
    sites = []
    for index, stage, block in _blocks(model):
        channels = block.out_channels
        module = make(channels)
        block.block.append(module)
        sites.append(Site(f"features.{index}.block.{len(block.block) - 1}", stage, channels, module))
    return sites


@placement("head", MOBILENET_V3)
def mobilenet_v3_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the final 1x1 conv-BN-hardswish, before global pooling."""
    return at_the_end(model, "features", model.features[-1].out_channels, make)


@placement("pre_conv", MOBILENET_V3)
def mobilenet_v3_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution: stem, expansion, depthwise, projection and the final 1x1 conv."""
    return before_every_conv(model, make, _stage_of(model))
