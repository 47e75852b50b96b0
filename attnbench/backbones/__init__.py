"""Shared torchvision backbones and the policies that insert attention modules into them."""

from attnbench.backbones.base import (
    BACKBONES,
    PLACEMENTS,
    BackboneSpec,
    BuiltModel,
    Site,
    build_model,
    get_backbone,
)

# Importing the family files fills the registries.
from attnbench.backbones import resnet  # noqa: E402,F401

__all__ = [
    "BACKBONES",
    "PLACEMENTS",
    "BackboneSpec",
    "BuiltModel",
    "Site",
    "build_model",
    "get_backbone",
]
