"""Edits shared by the placement policies: put a module after a layer, or before every convolution."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from attnbench.backbones.base import ModuleFactory, Site


def append_after(parent: nn.Module, name: str, module: nn.Module) -> str:
    """Replaces child `name` with Sequential(child, module); returns the new module's relative path.

    A Sequential wrapper keeps the parent's forward untouched, so torchvision's code runs as written.
    """
    setattr(parent, name, nn.Sequential(getattr(parent, name), module))
    return f"{name}.1"


def at_the_end(model: nn.Module, path: str, channels: int, make: ModuleFactory) -> list[Site]:
    """The `head` placement: one module appended to the Sequential at `path` (the last stage), before
    global pooling, on its `channels` output channels."""
    container = model.get_submodule(path)
    module = make(channels)
    container.append(module)
    return [Site(f"{path}.{len(container) - 1}", "head", channels, module)]


def before_every_conv(
    model: nn.Module, make: ModuleFactory, stage_of: Callable[[str], str]
) -> list[Site]:
    """A module before every Conv2d (stem, block and shortcut convs), built for the conv's input channels."""
    convs = [(path, conv) for path, conv in model.named_modules() if isinstance(conv, nn.Conv2d)]
    sites = []
    for path, conv in convs:
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        module = make(conv.in_channels)
        setattr(parent, name, nn.Sequential(module, conv))
        sites.append(Site(f"{path}.0", stage_of(path), conv.in_channels, module))
    return sites
