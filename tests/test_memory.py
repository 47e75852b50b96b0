"""Peak memory: the storage tracker on known allocations, and the CUDA probe."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from attnbench.backbones import BuiltModel
from attnbench.config import CaseSpec, TimingSpec, attention_entry
from attnbench.measure import METRICS, MeasureContext
from attnbench.measure.memory import MEMORY_PROBES, StorageTracker
from attnbench.measure.prepared import PreparedCase, PreparedStep

MIB = 2**20


def floats(mib: int) -> torch.Tensor:
    return torch.empty(mib * MIB // 4, dtype=torch.float32)


def test_peak_is_the_largest_live_sum() -> None:
    with StorageTracker() as tracker:
        a = floats(4)
        b = floats(8)
        del a
        c = floats(4)
        assert tracker.current_bytes == 12 * MIB
        del b, c
    assert tracker.peak_bytes == 12 * MIB
    assert tracker.current_bytes == 0


def test_views_and_in_place_results_are_not_new_memory() -> None:
    existing = torch.zeros(MIB // 4)
    with StorageTracker() as tracker:
        existing.add_(1)  # writes into a storage created before the tracker
        fresh = floats(2)
        fresh.view(-1)[:10].mul_(2)
        fresh.reshape(2, -1)
    assert tracker.peak_bytes == 2 * MIB


def test_a_convolution_holds_exactly_its_output() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode(), StorageTracker() as tracker:
        out = conv(x)
    assert tracker.peak_bytes == out.numel() * out.element_size() == 2 * 8 * 16 * 16 * 4


def test_backward_memory_is_seen() -> None:
    layer = nn.Linear(256, 256)
    x = torch.randn(64, 256, requires_grad=True)
    with StorageTracker() as tracker:
        layer(x).sum().backward()
    output = 64 * 256 * 4
    assert tracker.peak_bytes >= output + 256 * 256 * 4  # the activation and the weight gradient


def test_a_step_that_timing_warmed_up_runs_once_for_its_memory() -> None:
    case = CaseSpec("resnet18", attention_entry("none"), 1, 32, "float32", "eval", "cpu")
    calls = []
    built = BuiltModel(nn.Identity(), [])
    prepared = PreparedCase(case, built, torch.device("cpu"), (), PreparedStep(lambda: calls.append(floats(1)), None, 0))
    context = MeasureContext(TimingSpec(), torch.device("cpu"))
    cold = METRICS.get("memory")(prepared, context)
    prepared.prepared.warm = True
    warm = METRICS.get("memory")(prepared, context)
    assert len(calls) == 2 + 1  # an untimed first call only while cold
    assert cold.columns["peak_mem_mib"] == warm.columns["peak_mem_mib"] == 1


def test_cpu_probe_leaves_compiled_cases_unmeasured() -> None:
    case = CaseSpec("resnet18", attention_entry("none"), 1, 32, "float32", "eval", "cpu", runtime="inductor")
    peak = MEMORY_PROBES["cpu"](lambda: floats(1), case, torch.device("cpu"))
    assert peak.peak_bytes is None
    eager = MEMORY_PROBES["cpu"](lambda: floats(1), replace(case, runtime="eager"), torch.device("cpu"))
    assert eager.peak_bytes == MIB


@pytest.mark.gpu
def test_cuda_probe_measures_a_known_allocation() -> None:
    case = CaseSpec("resnet18", attention_entry("none"), 1, 32, "float32", "eval", "cuda")
    kept = torch.empty(32 * MIB, dtype=torch.uint8, device="cuda")  # baseline, not counted
    peak = MEMORY_PROBES["cuda"](
        lambda: torch.empty(64 * MIB, dtype=torch.uint8, device="cuda").fill_(1), case, torch.device("cuda")
    )
    assert peak.peak_bytes == 64 * MIB
    # The step's own reservation: the 32 MiB kept before it are not the step's.
    assert 64 * MIB <= peak.reserved_bytes <= 1.05 * 64 * MIB
    del kept
