"""Suite-time check that a (backbone, attention, placement) pair can be built, with the reason if not.

Cheap by construction: the backbone is built on the meta device (no weights allocated), the placement
policy fills it with probes that record the tensor each site receives, and one meta forward pass yields
every site's input shape. The check then refuses placements the module cannot take, feature maps smaller
than the module needs, and options its constructor refuses at any site (built once per distinct site).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from attnbench.backbones.base import (
    NATIVE_ATTENTION,
    NATIVE_PLACEMENT,
    check_native,
    check_placement,
    get_backbone,
    place_modules,
    placement_policy,
    resolve_placement,
)
from attnbench.errors import AttnbenchError, OptionError
from attnbench.modules import NATIVE, get_attention


@dataclass(frozen=True)
class ProbedSite:
    """What one site receives: channels, site keywords (e.g. SK's stride) and the input shape."""

    path: str
    channels: int
    site: tuple[tuple[str, Any], ...]
    shape: tuple[int, ...]

    @property
    def stride(self) -> int:
        return dict(self.site).get("stride", 1)


class Probe(nn.Module):
    """Stands in for an attention module: records its inputs; a conv replacement applies its stride."""

    def __init__(self, channels: int, **site: Any):
        super().__init__()
        self.channels, self.site, self.shapes = channels, tuple(sorted(site.items())), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        stride = dict(self.site).get("stride", 1)
        return x[:, :, ::stride, ::stride]  # a padded 3x3 conv's output size


@lru_cache(maxsize=64)
def probe_sites(backbone_name: str, placement_name: str, resolution: int) -> tuple[ProbedSite, ...]:
    """Every site of `placement_name` in `backbone_name` with the shape it receives at batch 1."""
    spec = get_backbone(backbone_name)
    policy = placement_policy(placement_name, spec.family, backbone_name)
    with torch.device("meta"):
        model = spec.build()
        sites = place_modules(model, spec.family, placement_name, policy, Probe)
        model.eval()
        model(torch.empty(1, 3, resolution, resolution))
    probed = []
    for site in sites:
        probe = site.module
        for shape in dict.fromkeys(probe.shapes):  # a shared probe sees one shape per use
            probed.append(ProbedSite(site.path, probe.channels, probe.site, shape))
    return tuple(dict.fromkeys(probed))


@lru_cache(maxsize=None)
def native_summary(backbone_name: str) -> str:
    """The attention a backbone ships, e.g. `SE ×8 (hardsigmoid), after ...`; "" for none (a meta build)."""
    spec = get_backbone(backbone_name)
    native = NATIVE_ATTENTION.get(spec.family)
    if native is None:
        return ""
    with torch.device("meta"):
        sites = native.find(spec.build())
    gates = sorted({type(site.module.scale_activation).__name__.lower() for site in sites})
    return f"SE ×{len(sites)} ({', '.join(gates)}), {native.where}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, AttnbenchError) else f"{type(error).__name__}: {message}"


def check_pair(
    backbone_name: str,
    attention_key: str,
    options: dict[str, Any] | None = None,
    placement_name: str | None = None,
    resolution: int = 64,
) -> str:
    """Returns the placement used, or raises OptionError with a one-line reason the pair cannot run.

    `resolution` should be the smallest of a grid: feature maps only get smaller below it. The modules are
    built but never run here: suite loading happens in the parent process, and a module that crashes its
    process must do so in the runner's isolated worker, where it becomes an error row. `native` needs
    only a backbone that ships attention: its modules are torchvision's own, built the same way everywhere.
    """
    if attention_key == NATIVE:
        try:
            check_native(backbone_name)
        except OptionError as error:
            raise OptionError(f"{NATIVE} in {backbone_name}: {error}") from None
        return NATIVE_PLACEMENT
    attention = get_attention(attention_key)
    resolved = attention.resolve_options(options or {})
    name = resolve_placement(backbone_name, attention, placement_name)
    where = f"{attention_key} in {backbone_name} at placement {name!r}"
    try:
        check_placement(attention, name)
        sites = probe_sites(backbone_name, name, resolution)
    except OptionError as error:
        raise OptionError(f"{where}: {error}") from None
    owned = sorted(set(options or {}) & {name for site in sites for name, _ in site.site})
    if owned:
        raise OptionError(f"{where}: option {owned[0]!r} is set by the placement at each site, not by the suite")
    built: set[tuple] = set()
    for site in sites:
        height, width = site.shape[2:]
        if min(height, width) < attention.min_spatial:
            raise OptionError(
                f"{where}: needs feature maps of at least {attention.min_spatial}x{attention.min_spatial}, "
                f"{site.path} gets {height}x{width} at resolution {resolution}; use a larger resolution"
            )
        if (site.channels, site.site) in built:
            continue
        built.add((site.channels, site.site))
        try:
            attention.cls(site.channels, **{**resolved, **dict(site.site)})
        except Exception as error:  # a module that cannot be built here is the reason to report
            raise OptionError(
                f"{where}: cannot be built at {site.path} ({site.channels} channels): {_first_line(error)}"
            ) from None
    return name


def runnable_entries(
    backbones: tuple[str, ...], entries: tuple[tuple[Any, bool], ...], resolution: int
) -> tuple[tuple[Any, ...], tuple[tuple[str, str, str], ...]]:
    """The grid's attention entries that can be built, each in the backbones it runs in, and the
    (label, backbone, reason) of each pair left out.

    `entries` are (AttentionEntry, came in through `"*"`). Every (backbone, entry) pair is checked at
    the grid's smallest resolution. An entry the suite names that cannot run is an OptionError with the
    reason; one that only came in through `"*"` is kept for the backbones it runs in (its `backbones`
    narrowed to them) and left out where it runs in none, so `"*"` means every registered module,
    wherever it can run; what it leaves out is returned, never dropped silently. `native` without a
    `backbones` list is narrowed the same way, to the grid backbones that ship attention of their own,
    and is an error only where none does.
    """
    from attnbench.modules import BASELINE, NATIVE

    kept, left_out = [], []
    for entry, starred in entries:
        outside = [b for b in entry.backbones if b not in backbones]
        if outside:
            raise OptionError(
                f"{entry.label} names backbone {outside[0]!r}, which is not in the grid; "
                f"accepted: {', '.join(backbones)}"
            )
        narrows = starred or (entry.key == NATIVE and not entry.backbones)
        fitting, refusals = [], []
        for backbone in filter(entry.applies_to, backbones):
            try:
                if entry.key != BASELINE:
                    check_pair(backbone, entry.key, entry.options_dict, entry.placement, resolution)
            except AttnbenchError as error:
                if not narrows:
                    raise
                refusals.append(error)
                if starred:
                    left_out.append((entry.label, backbone, str(error)))
                continue
            fitting.append(backbone)
        if not fitting:
            if not starred:
                raise refusals[0]
            continue
        kept.append(replace(entry, backbones=tuple(fitting)) if narrows and len(fitting) < len(backbones) else entry)
    if not kept:
        raise OptionError(f"no module of '*' runs in {', '.join(backbones)}")
    return tuple(kept), tuple(left_out)
