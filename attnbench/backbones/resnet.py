"""torchvision ResNets and ResNeXt (stride on the 3x3 conv, "v1.5") and their insertion points.

Every policy edits a stock torchvision model in place: a module is appended after a layer through an
nn.Sequential, or takes a layer's place, so the block definitions stay torchvision's own.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from attnbench.backbones.base import ModuleFactory, Site, backbone, placement, placement_fallback
from attnbench.backbones.insert import append_after, at_the_end, before_every_conv
from attnbench.errors import OptionError

RESNET = "resnet"
STAGES = ("layer1", "layer2", "layer3", "layer4")
MIN_RESOLUTION = 32
"""The network downsamples 32x: 32 px is the smallest input that leaves layer4 a 1x1 map."""
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d")


def _torchvision_builder(name: str) -> Callable[[], nn.Module]:
    """A builder defined in this module (spawned case workers import the module that defines it)."""

    def build() -> nn.Module:
        return getattr(models, name)(weights=None)

    build.__name__ = build.__qualname__ = name
    return build


for _name in RESNETS:
    backbone(_name, family=RESNET, min_resolution=MIN_RESOLUTION)(_torchvision_builder(_name))


# Coordinate Attention's paper placement (`expanded`) needs an expansion layer; in ResNets its authors
# used block placement.
placement_fallback("expanded", family=RESNET, use="block")


def _last_bn_name(block: nn.Module) -> str:
    if isinstance(block, Bottleneck):
        return "bn3"
    if isinstance(block, BasicBlock):
        return "bn2"
    raise TypeError(f"unsupported residual block {type(block).__name__}")


def _after_last_bn(stage: str, index: int, block: nn.Module, module: nn.Module) -> Site:
    bn_name = _last_bn_name(block)
    channels = getattr(block, bn_name).num_features
    return Site(f"{stage}.{index}.{append_after(block, bn_name, module)}", stage, channels, module)


def _last_bn_channels(block: nn.Module) -> int:
    return getattr(block, _last_bn_name(block)).num_features


@placement("block", RESNET)
def resnet_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the last BatchNorm of every residual block, before the residual addition."""
    return [
        _after_last_bn(stage, index, block, make(_last_bn_channels(block)))
        for stage in STAGES
        for index, block in enumerate(getattr(model, stage))
    ]


@placement("stage_end", RESNET)
def resnet_stage_end(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the last BatchNorm of the last block of each stage, before its residual addition (GSoP)."""
    sites = []
    for stage in STAGES:
        blocks = getattr(model, stage)
        last = blocks[-1]
        sites.append(_after_last_bn(stage, len(blocks) - 1, last, make(_last_bn_channels(last))))
    return sites


@placement("between_stages", RESNET)
def resnet_between_stages(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """On the outputs of layer1, layer2 and layer3 (BAM); layer4 feeds the classifier directly."""
    sites = []
    for stage in STAGES[:-1]:
        blocks = getattr(model, stage)
        channels = _last_bn_channels(blocks[-1])
        module = make(channels)
        blocks.append(module)
        sites.append(Site(f"{stage}.{len(blocks) - 1}", stage, channels, module))
    return sites


@placement("head", RESNET)
def resnet_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the last stage, before global pooling (EncNet's context encoding)."""
    return at_the_end(model, "layer4", _last_bn_channels(model.layer4[-1]), make)


def _resnet_stage_of(path: str) -> str:
    first = path.split(".", 1)[0]
    return first if first in STAGES else "stem"


@placement("pre_conv", RESNET)
def resnet_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution, stem and shortcut convs included (GCT)."""
    return before_every_conv(model, make, _resnet_stage_of)


@placement("replace_conv3x3", RESNET, replaces_conv=True)
def resnet_replace_conv3x3(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Every Bottleneck's 3x3 conv and its BatchNorm replaced by `make(width, stride=...)` (SK).

    The replacement brings its own BatchNorms and ReLUs per branch, so bn2 goes with the conv; the
    block's shared ReLU that follows is a no-op on the non-negative, softmax-weighted sum.
    """
    sites = []
    for stage in STAGES:
        for index, block in enumerate(getattr(model, stage)):
            if not isinstance(block, Bottleneck):
                raise OptionError(
                    f"placement 'replace_conv3x3' replaces a Bottleneck's 3x3 conv; this network has "
                    f"{type(block).__name__} blocks"
                )
            conv = block.conv2
            module = make(conv.out_channels, stride=conv.stride[0])
            block.conv2 = module
            block.bn2 = nn.Identity()
            sites.append(Site(f"{stage}.{index}.conv2", stage, conv.out_channels, module))
    return sites


@placement("shared_per_stage", RESNET, resets_state=True)
def resnet_shared_per_stage(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """One module per stage, applied at every block placement point of that stage (DIA).

    A forward pre-hook on the stage calls the module's `reset_state()`, so each pass starts the shared
    recurrent state afresh at the stage's first block.
    """
    sites = []
    for stage in STAGES:
        blocks = getattr(model, stage)
        module = make(_last_bn_channels(blocks[0]))
        reset = getattr(module, "reset_state", None)
        if callable(reset):
            blocks.register_forward_pre_hook(lambda _stage, _inputs, reset=reset: reset())
        sites += [_after_last_bn(stage, index, block, module) for index, block in enumerate(blocks)]
    return sites
