"""Parameter totals that papers and official repositories publish, with the configuration that should
reproduce each. Data only; the "Paper reproduction" report section compares them with measured counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNITS = {"M": 1e6, "Mi": 2.0**20}
"""M: millions. Mi: the 1024-based "M" of ECA-Net's tables (24.37M = 25,557,032 / 2^20)."""


@dataclass(frozen=True)
class PublishedCount:
    """One published parameter total: the model it names, how attnbench rebuilds it, and where it is printed."""

    model: str
    backbone: str
    attention: str
    options: tuple[tuple[str, Any], ...]
    value: str
    """As printed; its decimals are the published precision."""
    unit: str
    source: str
    note: str = ""
    """Why the measured count differs, where it does."""

    @property
    def decimals(self) -> int:
        return len(self.value.partition(".")[2])

    @property
    def scale(self) -> float:
        return UNITS[self.unit]


ECA_README = "BangguWu/ECANet README.md, ImageNet table (Param. column, 1024-based M)"
SKNET_README = "implus/SKNet README.md, Table 2 (#P column)"
CA_README = "houqb/CoordAttention README.md, ImageNet table (Params column)"
MMPRETRAIN_SE = "open-mmlab/mmpretrain configs/seresnet/README.md (Params(M) column)"
TORCHVISION = (
    "torchvision 0.29 model docs, num_params of the ImageNet weights "
    "(torchvision.models.get_model_weights(name).DEFAULT.meta['num_params'])"
)
"""Exact counts, hence M with six decimals; the `native` entry is torchvision's model with its own SE."""

SKNET_BASELINE_NOTE = (
    "A baseline of the SKNet authors' table, not the module's own reference: SE-ResNeXt-50 and "
    "CBAM-ResNeXt-50 on torchvision's resnext50_32x4d come to 27.56M with FC biases, and 27.54M "
    "without. The 0.1M gap is larger than the biases (16k) and the spatial gate (1.6k), and the "
    "Caffe definitions behind those two rows are not published, so it cannot be attributed."
)

PUBLISHED: tuple[PublishedCount, ...] = (
    PublishedCount("ResNet-50", "resnet50", "none", (), "24.37", "Mi", ECA_README + " and ECA-Net abstract"),
    PublishedCount("ECA-Net50 (k3557)", "resnet50", "eca", (("k_size", "resnet50"),), "24.37", "Mi", ECA_README),
    PublishedCount("ECA-Net101 (k3357)", "resnet101", "eca", (("k_size", "resnet101"),), "42.49", "Mi", ECA_README),
    PublishedCount(
        "ECA-MobileNet_v2 (k13)", "mobilenet_v2", "eca", (("k_size", "mobilenet_v2"),), "3.34", "Mi", ECA_README
    ),
    PublishedCount("SE-ResNet-50", "resnet50", "se", (("bias", True),), "28.09", "M", MMPRETRAIN_SE),
    PublishedCount("SE-ResNet-101", "resnet101", "se", (("bias", True),), "49.33", "M", MMPRETRAIN_SE),
    PublishedCount("ResNeXt-50", "resnext50_32x4d", "none", (), "25.0", "M", SKNET_README),
    PublishedCount("SKNet-50", "resnext50_32x4d", "sk", (), "27.5", "M", SKNET_README),
    PublishedCount("ResNeXt-50 + BAM", "resnext50_32x4d", "bam", (), "25.4", "M", SKNET_README),
    PublishedCount(
        "SENet-50 (SE-ResNeXt-50)", "resnext50_32x4d", "se", (("bias", True),), "27.7", "M", SKNET_README,
        SKNET_BASELINE_NOTE,
    ),
    PublishedCount("ResNeXt-50 + CBAM", "resnext50_32x4d", "cbam", (), "27.7", "M", SKNET_README, SKNET_BASELINE_NOTE),
    PublishedCount("MobileNetV2-1.0", "mobilenet_v2", "none", (), "3.5", "M", CA_README),
    PublishedCount("MobileNetV2 + CA", "mobilenet_v2", "coord", (), "3.95", "M", CA_README),
    PublishedCount("EfficientNet-B0", "efficientnet_b0", "native", (), "5.288548", "M", TORCHVISION),
    PublishedCount("EfficientNetV2-S", "efficientnet_v2_s", "native", (), "21.458488", "M", TORCHVISION),
    PublishedCount("MobileNetV3-Large", "mobilenet_v3_large", "native", (), "5.483032", "M", TORCHVISION),
    PublishedCount("MobileNetV3-Small", "mobilenet_v3_small", "native", (), "2.542856", "M", TORCHVISION),
    PublishedCount("RegNetY-400MF", "regnet_y_400mf", "native", (), "4.344144", "M", TORCHVISION),
    PublishedCount("ConvNeXt-T", "convnext_tiny", "none", (), "28.589128", "M", TORCHVISION),
)
