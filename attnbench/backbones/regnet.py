"""torchvision RegNetY-400MF, which ships its own squeeze-excitation.

`stem` is a conv-BN-ReLU; `trunk_output` holds four stages (block1 ... block4), Sequentials of
ResBottleneckBlock. A block's `f` is a Sequential [a: 1x1 conv-BN-ReLU, b: grouped 3x3 conv-BN-ReLU,
se: SqueezeExcitation, c: 1x1 conv-BN]; the block adds `f`'s output to the (projected) input, then applies
a ReLU. Policies insert into `f`, so torchvision's forward runs unchanged.

torchvision's SE gates the grouped conv's output (the block width) and squeezes it to se_ratio 0.25 of the
block's input width, not of the width it gates: 104 channels of a block with 32 input channels squeeze to 8.
The RegNetX models have no SE; they would need a family of their own, without `native`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.regnet import BlockParams, RegNet, ResBottleneckBlock

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

REGNET_Y = "regnet_y"


REGNET_Y_400MF = {"depth": 16, "w_0": 48, "w_a": 27.89, "w_m": 2.09, "group_width": 8, "se_ratio": 0.25}
"""torchvision's regnet_y_400mf configuration (torchvision/models/regnet.py); the tests compare the result
with torchvision's own model, parameter by parameter."""


@backbone("regnet_y_400mf", family=REGNET_Y)
def regnet_y_400mf() -> nn.Module:
    """torchvision's regnet_y_400mf from its public parts, BatchNorm settings included.

    torchvision derives the stage widths with tensor ops read back by .tolist(), which the meta device
    (where suites are validated) cannot do; so the widths are computed on the CPU, whatever the default.
    """
    with torch.device("cpu"):
        params = BlockParams.from_init_params(**REGNET_Y_400MF)
    return RegNet(params, norm_layer=partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))


# A per-block gate, and Coordinate Attention's `expanded` spot (after the 3x3 conv, on the block width),
# take the SE's place.
placement_fallback("block", family=REGNET_Y, use="native")
placement_fallback("expanded", family=REGNET_Y, use="native")


def _stage_of(path: str) -> str:
    """trunk_output.block2.block2-0.f.se -> block2; the stem conv is `stem`."""
    parts = path.split(".")
    return parts[1] if parts[0] == "trunk_output" else "stem"


@native_attention(REGNET_Y, where="after each block's grouped 3x3 conv")
def regnet_native(model: nn.Module) -> list[Site]:
    """torchvision's SqueezeExcitation of every ResBottleneckBlock."""
    return squeeze_excitation_sites(model, _stage_of)


@placement("block", REGNET_Y)
def regnet_block(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """After the last BatchNorm of every block (f.c), before the residual addition and the block's ReLU."""
    blocks = [(path, block) for path, block in model.named_modules() if isinstance(block, ResBottleneckBlock)]
    sites = []
    for path, block in blocks:
        last = block.f.c
        channels = last.out_channels
        module = make(channels)
        last.append(module)
        sites.append(Site(f"{path}.f.c.{len(last) - 1}", _stage_of(path), channels, module))
    return sites


@placement("head", REGNET_Y)
def regnet_head(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Once, on the output of the last stage, before global pooling."""
    return at_the_end(model, "trunk_output", model.fc.in_features, make)


@placement("pre_conv", REGNET_Y)
def regnet_pre_conv(model: nn.Module, make: ModuleFactory) -> list[Site]:
    """Before every convolution: stem, the block convs and the shortcut projections."""
    return before_every_conv(model, make, _stage_of)
