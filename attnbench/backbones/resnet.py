"""torchvision ResNets (stride on the 3x3 conv, "v1.5") and their insertion points."""

from __future__ import annotations

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from attnbench.backbones.base import ModuleFactory, Site, backbone, placement

RESNET = "resnet"
STAGES = ("layer1", "layer2", "layer3", "layer4")


@backbone("resnet18", family=RESNET)
def resnet18() -> nn.Module:
    return models.resnet18(weights=None)


@backbone("resnet50", family=RESNET)
def resnet50() -> nn.Module:
    return models.resnet50(weights=None)


def _last_bn_name(block: nn.Module) -> str:
    if isinstance(block, Bottleneck):
        return "bn3"
    if isinstance(block, BasicBlock):
        return "bn2"
    raise TypeError(f"unsupported residual block {type(block).__name__}")


@placement("block", RESNET)
def resnet_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the last BatchNorm of every residual block, before the residual addition."""
    sites = []
    for stage in STAGES:
        for index, block in enumerate(getattr(model, stage)):
            bn_name = _last_bn_name(block)
            bn = getattr(block, bn_name)
            module = make(bn.num_features)
            setattr(block, bn_name, nn.Sequential(bn, module))
            sites.append(Site(f"{stage}.{index}.{bn_name}.1", stage, bn.num_features, module))
    return sites
