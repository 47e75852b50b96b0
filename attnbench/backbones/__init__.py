"""Shared torchvision backbones and the policies that insert attention modules into them."""

from attnbench.backbones.base import (
    BACKBONES,
    PLACEMENT_FALLBACKS,
    PLACEMENT_TRAITS,
    PLACEMENTS,
    BackboneSpec,
    BuiltModel,
    PlacementTraits,
    Site,
    build_model,
    check_placement,
    get_backbone,
    resolve_placement,
)

# Importing the family files fills the registries.
from attnbench.backbones import mobilenet, resnet  # noqa: E402,F401
from attnbench.backbones.validate import check_pair, probe_sites, runnable_entries  # noqa: E402

__all__ = [
    "BACKBONES",
    "PLACEMENTS",
    "PLACEMENT_FALLBACKS",
    "PLACEMENT_TRAITS",
    "BackboneSpec",
    "BuiltModel",
    "PlacementTraits",
    "Site",
    "build_model",
    "check_pair",
    "check_placement",
    "get_backbone",
    "probe_sites",
    "resolve_placement",
    "runnable_entries",
]
