"""Peak memory of one step: the CUDA caching allocator's statistics, or a tracker of live storages on the CPU.

Both measure what one step allocates on top of what exists before it (weights, the input batch):
activations, gradients, workspaces. A step that has not run yet (no timing before) runs once untimed
first, so that lazy initialisation, cuDNN's algorithm search and compilation are not counted.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from attnbench.config import CaseSpec
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.prepared import PreparedCase, Step
from attnbench.runtimes import EAGER, runs_torch_ops

MIB = 2**20


@dataclass(frozen=True)
class MemoryPeak:
    peak_bytes: int | None
    reserved_bytes: int | None = None


class StorageTracker(TorchDispatchMode):
    """Live bytes of the tensor storages that ATen ops create inside the mode, and their peak.

    Each new storage is counted once (views and in-place results alias an existing storage, so ops
    whose schema marks an aliasing return are not counted) and uncounted by a weakref finalizer when
    it dies. Scratch buffers a kernel allocates and frees internally are not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(ret.alias_info is not None for ret in func._schema.returns):
            for value in tree_leaves(out):
                if isinstance(value, torch.Tensor):
                    self._track(value.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)  # storages keep their Python object while alive, so the id is stable
        if key in self.live or storage.nbytes() == 0:
            return
        self.live[key] = storage.nbytes()
        self.current_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current_bytes -= self.live.pop(key)


MemoryProbe = Callable[[Step, CaseSpec, torch.device], MemoryPeak]


def cuda_peak(step: Step, case: CaseSpec, device: torch.device) -> MemoryPeak:
    """max_memory_allocated over one step minus what was allocated before it; reserved likewise: the blocks
    the caching allocator had to reserve for the step beyond what it held before (the group's other models
    and the weights stay out of it, so cases timed together read alike)."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()  # so that the step's reservations are its own, not blocks cached by earlier ones
    torch.cuda.reset_peak_memory_stats(device)
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    step()
    torch.cuda.synchronize(device)
    return MemoryPeak(
        torch.cuda.max_memory_allocated(device) - allocated, torch.cuda.max_memory_reserved(device) - reserved
    )


def cpu_peak(step: Step, case: CaseSpec, device: torch.device) -> MemoryPeak:
    """Peak of live storages created during one step. A compiled model under a dispatch mode would
    run eagerly, and a deployment runtime allocates outside PyTorch, so only eager CPU cases are measured:
    the others are left empty rather than measured wrongly. No garbage collection first (a full one costs
    a quarter of a second here): only storages created inside the tracker count, so garbage left by earlier
    steps cannot change the peak."""
    if case.runtime != EAGER:
        return MemoryPeak(None)
    with StorageTracker() as tracker:
        step()
    return MemoryPeak(tracker.peak_bytes)


MEMORY_PROBES: dict[str, MemoryProbe] = {"cuda": cuda_peak, "cpu": cpu_peak}


def mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


@metric("memory")
def memory(prepared: PreparedCase, context: MeasureContext) -> MetricResult:
    """A deployment runtime (ONNX Runtime, OpenVINO, TensorRT) allocates with its own allocator, which
    neither PyTorch's CUDA statistics nor the CPU probe see: its cases are left empty."""
    if not runs_torch_ops(prepared.case):
        return MetricResult({"peak_mem_mib": None, "peak_mem_reserved_mib": None})
    if not prepared.prepared.warm:
        prepared.step()  # untimed first call: lazy init, algorithm search
    peak = MEMORY_PROBES[context.device.type](prepared.step, prepared.case, context.device)
    return MetricResult(
        {"peak_mem_mib": mib(peak.peak_bytes), "peak_mem_reserved_mib": mib(peak.reserved_bytes)}
    )
