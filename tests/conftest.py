"""Shared fixtures: a throwaway project folder with its own attnbench.toml and suites."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from attnbench.config import ProjectConfig, load_project

TINY_SUITE = """
name = "tiny"
description = "two modules, one shape"
metrics = ["complexity", "latency"]
[grid]
backbones = ["resnet18"]
attention = ["none", "se"]
batch_sizes = [1]
resolutions = [32]
device = "cpu"
[timing]
warmup = 1
min_repeats = 3
max_repeats = 5
max_seconds = 0.05
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    write(tmp_path / "attnbench.toml", 'results_dir = "results"\nthreads = 1\n')
    write(tmp_path / "suites" / "tiny.toml", TINY_SUITE)
    return tmp_path


@pytest.fixture
def project(project_dir: Path) -> ProjectConfig:
    return load_project(project_dir / "attnbench.toml")


@pytest.fixture(autouse=True)
def registries_as_they_were():
    """Modules a test registers (plugins, crashing modules) leave with it, so no test sees another's."""
    from attnbench.backbones import BACKBONES
    from attnbench.modules import ATTENTION

    saved = {registry: dict(registry._entries) for registry in (ATTENTION, BACKBONES)}
    yield
    for registry, entries in saved.items():
        registry._entries.clear()
        registry._entries.update(entries)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
