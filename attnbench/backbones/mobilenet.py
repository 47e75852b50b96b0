"""torchvision MobileNetV2 and its insertion points.

`features` holds the stem conv, 17 InvertedResidual blocks and a final 1x1 conv. A block's `conv` is a
Sequential: [1x1 expansion ConvBNReLU6 (only when expand ratio != 1), 3x3 depthwise ConvBNReLU6,
1x1 linear projection conv, BatchNorm]; policies insert into that Sequential, so torchvision's forward
(including the residual addition) runs unchanged.
"""

from __future__ import annotations

from torch import nn
from torchvision import models
from torchvision.models.mobilenetv2 import InvertedResidual

from attnbench.backbones.base import ModuleFactory, Site, backbone, placement
from attnbench.backbones.insert import at_the_end, before_every_conv

MOBILENET = "mobilenet"


@backbone("mobilenet_v2", family=MOBILENET, min_resolution=32)
def mobilenet_v2() -> nn.Module:
    return models.mobilenet_v2(weights=None)


def _blocks(model: nn.Module) -> list[tuple[int, str, InvertedResidual]]:
    """(index in features, stage, block) for every InvertedResidual.

    Stages are the paper's bottleneck sequences (rows of its Table 2): a sequence starts at the block
    that has no residual connection, where channels or resolution change.
    """
    blocks, stage = [], 0
    for index, layer in enumerate(model.features):
        if isinstance(layer, InvertedResidual):
            stage += not layer.use_res_connect
            blocks.append((index, f"seq{stage}", layer))
    return blocks


def _is_expanded(block: InvertedResidual) -> bool:
    return len(block.conv) == 4


@placement("block", MOBILENET)
def mobilenet_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the projection BatchNorm of every InvertedResidual, before the residual addition."""
    sites = []
    for index, stage, block in _blocks(model):
        channels = block.out_channels
        module = make(channels)
        block.conv.append(module)
        sites.append(Site(f"features.{index}.conv.{len(block.conv) - 1}", stage, channels, module))
    return sites


@placement("expanded", MOBILENET)
def mobilenet_expanded(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the depthwise ConvBNReLU6 of blocks with expand ratio != 1, on the expanded channels (CA)."""
    sites = []
    for index, stage, block in _blocks(model):
        if not _is_expanded(block):
            continue
        channels = block.conv[1].out_channels
        module = make(channels)
        block.conv.insert(2, module)
        sites.append(Site(f"features.{index}.conv.2", stage, channels, module))
    return sites


@placement("head", MOBILENET)
def mobilenet_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the final 1x1 conv, before global pooling."""
    return at_the_end(model, "features", model.features[-1].out_channels, make)


@placement("pre_conv", MOBILENET)
def mobilenet_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution: stem, expansion, depthwise, projection and the final 1x1 conv."""
    stages = {f"features.{index}": stage for index, stage, _ in _blocks(model)}

    def stage_of(path: str) -> str:
        prefix = ".".join(path.split(".")[:2])
        return stages.get(prefix, "stem" if prefix == "features.0" else "head")

    return before_every_conv(model, make, stage_of)
