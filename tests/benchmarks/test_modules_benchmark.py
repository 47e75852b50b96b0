"""Every registered attention module timed with pytest-benchmark's `benchmark` fixture.

For projects that already gate with pytest-benchmark: save a run, then compare and fail on a slower median:

    pytest tests/benchmarks --benchmark-autosave
    pytest tests/benchmarks --benchmark-compare --benchmark-compare-fail=median:10%

Each module is timed alone, on the input its first insertion site receives in a small backbone. Excluded
from the default test run (pyproject's --ignore); naming the folder runs it.
"""

from __future__ import annotations

import pytest
import torch

from attnbench.backbones import build_model
from attnbench.errors import AttnbenchError
from attnbench.modules import ATTENTION

BACKBONE = "resnet18"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Small on the CPU to stay quick; ImageNet-sized on a GPU, where small tensors only measure launches.
BATCH, RESOLUTION = (32, 224) if DEVICE.type == "cuda" else (2, 64)


def first_site_input(key: str) -> tuple[torch.nn.Module, torch.Tensor]:
    """The module at the first site of `key` in the backbone, and a random tensor of its input's shape."""
    try:
        built = build_model(BACKBONE, key)
    except AttnbenchError as error:  # e.g. a default placement this backbone family does not offer yet
        pytest.skip(f"{key} cannot be placed in {BACKBONE}: {error}")
    module = built.sites[0].module
    shapes: list[torch.Size] = []
    hook = module.register_forward_pre_hook(lambda _, inputs: shapes.append(inputs[0].shape))
    with torch.inference_mode():
        built.model.eval()(torch.randn(1, 3, RESOLUTION, RESOLUTION))
    hook.remove()
    return module.eval().to(DEVICE), torch.randn(BATCH, *shapes[0][1:], device=DEVICE)


@pytest.mark.parametrize("key", ATTENTION.names())
def test_attention_module(benchmark, key: str) -> None:
    module, inputs = first_site_input(key)
    benchmark.group = f"{BACKBONE} first site, batch {BATCH}, {RESOLUTION}px, {DEVICE.type}"
    benchmark.extra_info["input_shape"] = list(inputs.shape)

    def step() -> torch.Tensor:
        output = module(inputs)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously; time them, not their launch
        return output

    with torch.inference_mode():
        output = benchmark(step)
    assert output.shape[0] == BATCH
