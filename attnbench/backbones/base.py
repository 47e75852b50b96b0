"""Backbone and placement registries, and the one function that builds a benchmarked model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn
from torchvision.ops import SqueezeExcitation

from attnbench.errors import OptionError
from attnbench.modules import BASELINE, NATIVE, AttentionSpec, get_attention
from attnbench.registry import Registry
from attnbench.seeds import seeded


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    build: Callable[[], nn.Module]
    min_resolution: int = 32


@dataclass(frozen=True)
class Site:
    """One insertion point: where it sits and what it receives.

    Under `shared_per_stage` several sites hold the same module object.
    """

    path: str
    stage: str
    channels: int
    module: nn.Module
    squeeze: int | None = None
    """At the sites of a backbone's own squeeze-excitation: the squeeze width torchvision chose there, which
    that SE's parameter formula needs (it is no C/r of the gated channels)."""


@dataclass(frozen=True)
class PlacementTraits:
    """What a placement asks of the module it places, checked before any model is built."""

    replaces_conv: bool = False
    """The module stands in for a convolution (SK) instead of gating a tensor of its own shape."""
    resets_state: bool = False
    """The placement resets a stateful module (one with `reset_state()`) before each pass (DIA)."""


ModuleFactory = Callable[..., nn.Module]
"""make(channels, **site): site keywords carry what a policy knows of the spot, e.g. SK's `stride`; they
take precedence over the module's options of the same name (a suite cannot set them, see check_pair)."""
PlacementPolicy = Callable[[nn.Module, ModuleFactory], list[Site]]

BACKBONES: Registry[BackboneSpec] = Registry("backbone")
PLACEMENTS: Registry[dict[str, PlacementPolicy]] = Registry("placement")
PLACEMENT_TRAITS: dict[str, PlacementTraits] = {}
PLACEMENT_FALLBACKS: dict[tuple[str, str], str] = {}
"""(paper placement, family) -> the placement a module's default becomes in a family that lacks it."""


def backbone(name: str, *, family: str, min_resolution: int = 32):
    """Decorator registering a zero-argument torchvision builder as backbone `name`."""

    def decorate(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        BACKBONES.add(name, BackboneSpec(name, family, build, min_resolution))
        return build

    return decorate


def placement(name: str, family: str, *, replaces_conv: bool = False, resets_state: bool = False):
    """Decorator registering the policy `name` for one backbone family.

    Every family registering `name` must declare the same traits: they describe the placement, not the family.
    """
    traits = PlacementTraits(replaces_conv, resets_state)

    def decorate(policy: PlacementPolicy) -> PlacementPolicy:
        if name not in PLACEMENTS:
            PLACEMENTS.add(name, {})
        if PLACEMENT_TRAITS.setdefault(name, traits) != traits:
            raise ValueError(f"placement {name!r} is registered with conflicting traits")
        PLACEMENTS.get(name)[family] = policy
        return policy

    return decorate


def placement_fallback(paper_placement: str, *, family: str, use: str) -> None:
    """In `family`, a module whose paper placement is `paper_placement` defaults to `use` instead.

    For placements a family lacks: Coordinate Attention's `expanded` needs MobileNetV2's expansion layer,
    and its authors used block placement in ResNets. And for families with a better spot: where a backbone
    ships its own squeeze-excitation, a per-block gate defaults to taking its place (`native`). Only
    defaults fall back; a suite that asks for `paper_placement` explicitly gets it, or the error.
    """
    PLACEMENT_FALLBACKS[(paper_placement, family)] = use


# --- attention a backbone ships with ---------------------------------------------------------------

NATIVE_PLACEMENT = "native"
NativeFinder = Callable[[nn.Module], list[Site]]


@dataclass(frozen=True)
class NativeAttention:
    """A family whose backbones ship attention modules of their own."""

    find: NativeFinder
    """The sites of those modules in a model as torchvision builds it, each naming its own module."""
    where: str
    """Where they sit, in words, for `attnbench list backbones`."""


NATIVE_ATTENTION: dict[str, NativeAttention] = {}


def native_attention(family: str, *, where: str) -> Callable[[NativeFinder], NativeFinder]:
    """Decorator registering `find(model)`, the sites of the attention modules `family`'s backbones ship.

    It also registers the family's `native` placement: a module built for each site's channels takes the
    place of the backbone's own. The `native` entry keeps them; `none` and every other placement run on
    the backbone without them (place_modules), so each is compared with the same plain network.
    """

    def decorate(find: NativeFinder) -> NativeFinder:
        NATIVE_ATTENTION[family] = NativeAttention(find, where)

        def replace_native(model: nn.Module, make: ModuleFactory) -> list[Site]:
            sites = []
            for site in find(model):
                module = make(site.channels)
                model.set_submodule(site.path, module)
                sites.append(replace(site, module=module))
            return sites

        replace_native.__doc__ = f"In place of each attention module the backbone ships ({where})."
        placement(NATIVE_PLACEMENT, family)(replace_native)
        return find

    return decorate


def squeeze_excitation_sites(model: nn.Module, stage_of: Callable[[str], str]) -> list[Site]:
    """Every torchvision SqueezeExcitation in `model`: it gates its own input, of fc1.in_channels channels."""
    return [
        Site(path, stage_of(path), module.fc1.in_channels, module, squeeze=module.fc1.out_channels)
        for path, module in model.named_modules()
        if isinstance(module, SqueezeExcitation)
    ]


NATIVE_FORMULA = "C·s + s + s·C + C, s the squeeze width torchvision chose"


def native_params(site: Site) -> int:
    """torchvision's SqueezeExcitation at a site: 1x1 convs C->s and s->C, both with bias."""
    return 2 * site.channels * site.squeeze + site.squeeze + site.channels


def native_sites(model: nn.Module, family: str) -> list[Site]:
    native = NATIVE_ATTENTION.get(family)
    return native.find(model) if native else []


def native_backbones() -> list[str]:
    return [name for name, spec in BACKBONES.items() if spec.family in NATIVE_ATTENTION]


def check_native(backbone_name: str) -> None:
    """Refuses the `native` entry on a backbone that ships no attention of its own."""
    if get_backbone(backbone_name).family not in NATIVE_ATTENTION:
        raise OptionError(
            f"backbone {backbone_name!r} ships no attention of its own for {NATIVE!r} to keep; "
            f"accepted: {', '.join(native_backbones()) or 'no registered backbone'}"
        )


def remove_native(model: nn.Module, family: str) -> None:
    """Puts nn.Identity in place of the backbone's own attention modules: the same paths, no work."""
    for site in native_sites(model, family):
        model.set_submodule(site.path, nn.Identity())


def place_modules(
    model: nn.Module, family: str, placement_name: str, policy: PlacementPolicy, make: ModuleFactory
) -> list[Site]:
    """Runs `policy` on the backbone without its own attention, unless the policy puts modules in its place."""
    if placement_name != NATIVE_PLACEMENT:
        remove_native(model, family)
    return policy(model, make)


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


def resolve_placement(backbone_name: str, attention: AttentionSpec, requested: str | None = None) -> str:
    """The requested placement, else the module's paper placement through the family's fallbacks."""
    if requested is not None:
        return requested
    family = get_backbone(backbone_name).family
    return PLACEMENT_FALLBACKS.get((attention.placement, family), attention.placement)


def is_stateful(attention: AttentionSpec) -> bool:
    """Modules that carry state across calls (DIA's LSTM cell) expose `reset_state()`."""
    return callable(getattr(attention.cls, "reset_state", None))


def check_placement(attention: AttentionSpec, name: str) -> None:
    """Refuses a placement that cannot hold this kind of module, whatever the backbone."""
    PLACEMENTS.get(name)
    traits = PLACEMENT_TRAITS[name]
    if traits.replaces_conv and attention.gate:
        accepted = sorted(p for p, t in PLACEMENT_TRAITS.items() if not t.replaces_conv)
        raise OptionError(
            f"placement {name!r} replaces a convolution, and {attention.key!r} is a gate that keeps its "
            f"input's shape; accepted: {', '.join(accepted)}"
        )
    if not traits.replaces_conv and not attention.gate:
        accepted = sorted(p for p, t in PLACEMENT_TRAITS.items() if t.replaces_conv)
        raise OptionError(
            f"{attention.key!r} replaces a convolution, it cannot sit at placement {name!r}; "
            f"accepted: {', '.join(accepted)}"
        )
    if is_stateful(attention) and not traits.resets_state:
        accepted = sorted(p for p, t in PLACEMENT_TRAITS.items() if t.resets_state)
        raise OptionError(
            f"{attention.key!r} keeps state across blocks and needs a placement that resets it; "
            f"accepted: {', '.join(accepted)}"
        )


@dataclass
class BuiltModel:
    model: nn.Module
    sites: list[Site]


def build_model(
    backbone_name: str,
    attention_key: str = BASELINE,
    options: dict[str, Any] | None = None,
    placement_name: str | None = None,
    base: nn.Module | None = None,
) -> BuiltModel:
    """A fresh backbone (random weights, drawn from fixed seeds so that they are the same in every run;
    nothing downloaded) with attention inserted by its policy.

    `native` keeps the attention modules the backbone ships, as its sites (it takes no options or
    placement); every other entry removes them first, so `none` is the backbone without any attention.
    `base`, a stock `backbone_name` model (build_backbone), is copied instead of building a new
    one: models built from one base share its weights, and a copy is several times faster than
    torchvision's initialisation.
    """
    spec = get_backbone(backbone_name)
    model = copy.deepcopy(base) if base is not None else build_backbone(backbone_name)
    if attention_key == NATIVE:
        check_native(backbone_name)
        return BuiltModel(model, native_sites(model, spec.family))
    if attention_key == BASELINE:
        remove_native(model, spec.family)
        return BuiltModel(model, [])
    attention_spec = get_attention(attention_key)
    resolved = attention_spec.resolve_options(options or {})
    name = resolve_placement(backbone_name, attention_spec, placement_name)
    check_placement(attention_spec, name)
    policy = placement_policy(name, spec.family, backbone_name)

    def make(channels: int, **site: Any) -> nn.Module:
        return attention_spec.cls(channels, **{**resolved, **site})

    with seeded(backbone_name, attention_key):
        return BuiltModel(model, place_modules(model, spec.family, name, policy, make))


def build_backbone(name: str) -> nn.Module:
    """The stock backbone as its builder makes it, initialised from a seed of its own: the same weights in
    every run (attnbench.seeds)."""
    with seeded(name):
        return get_backbone(name).build()
