"""Registry entries for attention modules: paper facts, default placement, options and formula."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from attnbench.errors import OptionError
from attnbench.modules.options import check_option, constructor_options
from attnbench.registry import Registry, close_matches

BASELINE = "none"
"""The key of the plain backbone that every module is compared with: no attention at all (a backbone's own
squeeze-excitation removed too)."""
NATIVE = "native"
"""The key of a backbone's own attention modules as torchvision builds them (EfficientNet's SE, say): like
`none`, a pseudo-entry of suites and results, not a registered module."""


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str
    year: int
    url: str


@dataclass(frozen=True)
class AttentionSpec:
    """Everything attnbench knows about one attention key."""

    key: str
    cls: type[nn.Module]
    paper: Paper
    placement: str
    params: Callable[..., int]
    formula: str
    notes: str = ""
    gate: bool = True
    """True when the module maps x to a tensor of x's shape (every module but conv replacements)."""
    min_spatial: int = 1
    """The smallest H and W the module is defined on (covariance needs more than one position)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    types: dict[str, Any] = field(default_factory=dict)
    """Each option's accepted type (modules.options); an option without one takes any value."""

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `options`, each checked against its type (an int given for a float
        becomes a float); unknown option names and values of the wrong type are refused."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            name = unknown[0]
            hint = close_matches(name, list(self.defaults))
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            accepted = ", ".join(self.defaults) or "none"
            raise OptionError(
                f"attention {self.key!r} has no option {name!r}{suggestion}; accepted: {accepted}"
            )
        checked = {name: check_option(self.key, name, value, self.types.get(name, Any))
                   for name, value in options.items()}
        return {**self.defaults, **checked}

    def build(self, channels: int, **options: Any) -> nn.Module:
        return self.cls(channels, **self.resolve_options(options))

    def param_count(self, channels: int, **options: Any) -> int:
        """The analytic parameter count of one instance at `channels` input channels."""
        return int(self.params(channels, **self.resolve_options(options)))


ATTENTION: Registry[AttentionSpec] = Registry("attention")


def attention(
    key: str,
    *,
    paper: Paper,
    placement: str,
    params: Callable[..., int],
    formula: str,
    notes: str = "",
    gate: bool = True,
    min_spatial: int = 1,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers an attention module under `key`.

    The options, their defaults and their types are read from the constructor, whose first argument is
    `channels` (modules.options.constructor_options).
    """

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        defaults, kinds = constructor_options(cls)
        spec = AttentionSpec(
            key=key,
            cls=cls,
            paper=paper,
            placement=placement,
            params=params,
            formula=formula,
            notes=notes,
            gate=gate,
            min_spatial=min_spatial,
            defaults=defaults,
            types=kinds,
        )
        ATTENTION.add(key, spec)
        return cls

    return decorate


def get_attention(key: str) -> AttentionSpec:
    return ATTENTION.get(key)


def hidden_units(channels: int, reduction: int, key: str) -> int:
    """C // r for bottleneck MLPs; refuses a reduction that leaves no hidden unit."""
    if reduction < 1:
        raise OptionError(
            f"attention {key!r}: reduction must be a positive integer, got {reduction}; accepted: 1 to {channels}"
        )
    hidden = channels // reduction
    if hidden < 1:
        raise OptionError(
            f"attention {key!r}: reduction {reduction} leaves no hidden unit at {channels} channels; "
            f"accepted: reduction <= {channels}"
        )
    return hidden


def conv_bn_relu(
    inputs: int, outputs: int, kernel_size: int, *, stride: int = 1, dilation: int = 1, groups: int = 1, bias: bool
) -> nn.Sequential:
    """Conv (same padding) -> BatchNorm2d -> ReLU, the unit several released modules stack."""
    padding = dilation * (kernel_size - 1) // 2
    conv = nn.Conv2d(inputs, outputs, kernel_size, stride, padding, dilation, groups, bias=bias)
    return nn.Sequential(conv, nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))
