"""Backbone and placement registries, and the one function that builds a benchmarked model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from attnbench.errors import OptionError
from attnbench.modules import BASELINE, get_attention
from attnbench.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    build: Callable[[], nn.Module]
    min_resolution: int = 32


@dataclass(frozen=True)
class Site:
    """One inserted attention instance: where it sits and what it receives."""

    path: str
    stage: str
    channels: int
    module: nn.Module


ModuleFactory = Callable[..., nn.Module]
"""make(channels, **site): site keywords carry what a policy knows of the spot, e.g. SK's `stride`."""
PlacementPolicy = Callable[[nn.Module, ModuleFactory], list[Site]]

BACKBONES: Registry[BackboneSpec] = Registry("backbone")
PLACEMENTS: Registry[dict[str, PlacementPolicy]] = Registry("placement")


def backbone(name: str, *, family: str, min_resolution: int = 32):
    """Decorator registering a zero-argument torchvision builder as backbone `name`."""

    def decorate(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        BACKBONES.add(name, BackboneSpec(name, family, build, min_resolution))
        return build

    return decorate


def placement(name: str, family: str):
    """Decorator registering the policy `name` for one backbone family."""

    def decorate(policy: PlacementPolicy) -> PlacementPolicy:
        if name not in PLACEMENTS:
            PLACEMENTS.add(name, {})
        PLACEMENTS.get(name)[family] = policy
        return policy

    return decorate


def get_backbone(name: str) -> BackboneSpec:
    return BACKBONES.get(name)


def placement_policy(name: str, family: str, backbone_name: str) -> PlacementPolicy:
    by_family = PLACEMENTS.get(name)
    if family not in by_family:
        supported = sorted(
            b for b, spec in BACKBONES.items() if spec.family in by_family
        )
        raise OptionError(
            f"placement {name!r} does not apply to backbone {backbone_name!r}; "
            f"it applies to: {', '.join(supported) or 'no registered backbone'}"
        )
    return by_family[family]


@dataclass
class BuiltModel:
    model: nn.Module
    sites: list[Site]

    @property
    def attention_modules(self) -> list[nn.Module]:
        return [site.module for site in self.sites]


def build_model(
    backbone_name: str,
    attention_key: str = BASELINE,
    options: dict[str, Any] | None = None,
    placement_name: str | None = None,
) -> BuiltModel:
    """A fresh backbone (random weights, nothing downloaded) with attention inserted by its policy."""
    spec = get_backbone(backbone_name)
    model = spec.build()
    if attention_key == BASELINE:
        return BuiltModel(model, [])
    attention_spec = get_attention(attention_key)
    resolved = attention_spec.resolve_options(options or {})
    policy = placement_policy(placement_name or attention_spec.placement, spec.family, backbone_name)
    sites = policy(model, lambda channels, **site: attention_spec.cls(channels, **site, **resolved))
    return BuiltModel(model, sites)
