"""Shared torchvision backbones and the policies that insert attention modules into them."""

from attnbench.backbones.base import (
    BACKBONES,
    NATIVE_ATTENTION,
    NATIVE_FORMULA,
    NATIVE_PLACEMENT,
    PLACEMENT_FALLBACKS,
    PLACEMENT_TRAITS,
    PLACEMENTS,
    BackboneSpec,
    BuiltModel,
    PlacementTraits,
    Site,
    build_backbone,
    build_model,
    check_native,
    check_placement,
    get_backbone,
    native_backbones,
    native_params,
    resolve_placement,
)

# Importing the family files fills the registries (in this order, that of `attnbench list backbones`).
from attnbench.backbones import mobilenet, resnet  # noqa: E402,F401
from attnbench.backbones import efficientnet, mobilenet_v3, regnet, convnext  # noqa: E402,F401
from attnbench.backbones.validate import check_pair, native_summary, probe_sites, runnable_entries  # noqa: E402

__all__ = [
    "BACKBONES",
    "NATIVE_ATTENTION",
    "NATIVE_FORMULA",
    "NATIVE_PLACEMENT",
    "PLACEMENTS",
    "PLACEMENT_FALLBACKS",
    "PLACEMENT_TRAITS",
    "BackboneSpec",
    "BuiltModel",
    "PlacementTraits",
    "Site",
    "build_backbone",
    "build_model",
    "check_native",
    "check_pair",
    "check_placement",
    "get_backbone",
    "native_backbones",
    "native_params",
    "native_summary",
    "probe_sites",
    "resolve_placement",
    "runnable_entries",
]
