"""Whether a case can fit in memory, estimated before anything of it is allocated.

A case too large for the host does not fail cleanly: the CPU allocator may raise, or the kernel's
out-of-memory killer may take the whole run, or the host swaps for minutes first (ResNet-18 at batch 64
and 4096 px grew past 8 GiB). So before a case's input batch is made, its memory is estimated: its model
is built on the meta device (no weights, no arithmetic) and one forward at batch 2 runs under the
tracker of live storages of the `memory` metric, which keeps the peak of the tensors the forward holds
at once (in train mode, autograd's saved tensors too). Every activation has the batch dimension, so

    needed = input batch + peak at batch 2 x batch / 2  [+ the weights, on a device they are not on yet]

with activations at the case's dtype (half of float32's bytes for float16 and bfloat16); in train mode
the peak is at least the weights' gradients, which the backward pass ends holding. It is a lower bound:
kernel workspaces, the allocator's fragmentation, autocast's weight copies and what the backward pass
adds on top of the forward's peak are left out. Measured on the CPU, it is exact for eval forwards and
10-15% under the peak of a training step at 224 px. A case is skipped, with the estimate as its reason,
when even this lower bound is more than MEMORY_HEADROOM of the memory available (the rest is left for
what the estimate leaves out): such a case cannot fit. A case that passes may still end `oom`.

Estimating costs a meta forward per model, resolution and mode, so a case whose input batch is tiny
against the memory available is not estimated (SCREEN_*): no backbone here needs more than a few hundred
times its input batch (ResNet-50 trains in about 320 times). The screen can only let a case run that
the estimate would have skipped, never skip one.
"""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path
from typing import Any

import torch

from attnbench.backbones import BuiltModel, build_model
from attnbench.config import CaseSpec
from attnbench.errors import DeviceError
from attnbench.signals import CaseTimeout
from attnbench.measure.memory import StorageTracker

MEMORY_HEADROOM = 0.9
"""The share of the available memory a case's estimate may take."""
SCREEN_FACTOR, SCREEN_FLOOR_BYTES = 2000, 256 * 2**20
"""A case is estimated only when SCREEN_FACTOR x its input batch + SCREEN_FLOOR_BYTES (what does not grow
with the input: covariance matrices, a module's buffers) + its weights are more than it may take."""
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")
GIB = 2**30


def activation_peak(case: CaseSpec) -> int:
    """Peak bytes of the tensors one forward of the case's model holds at once at batch 2, as float32."""
    entry = case.attention
    with torch.device("meta"):
        model = build_model(case.backbone, entry.key, entry.options_dict, case.requested_placement).model
        inputs = torch.empty(2, 3, case.resolution, case.resolution)
    model.to("meta")  # what a module made on the host regardless (from numpy, say)
    model.train(case.mode == "train")
    with torch.set_grad_enabled(case.mode == "train"), StorageTracker() as tracker:
        model(inputs)
    return tracker.peak_bytes


def _cached_peak(case: CaseSpec, cache: dict[Any, Any]) -> int | None:
    entry = case.attention
    key = ("footprint", case.backbone, entry.key, entry.resolved, case.placement, case.resolution, case.mode)
    if key not in cache:
        try:
            cache[key] = activation_peak(case)
        except CaseTimeout:
            raise
        except Exception:  # a module that cannot run on the meta device: no estimate, the case runs
            cache[key] = None
    return cache[key]


def needed_bytes(case: CaseSpec, built: BuiltModel, device: torch.device, cache: dict[Any, Any]) -> int | None:
    """The lower bound of the module docstring, or None where no estimate can be made."""
    peak = _cached_peak(case, cache)
    if peak is None:
        return None
    scale = 0.5 if case.dtype in ("float16", "bfloat16") else 1.0  # the input batch stays float32
    activations = int(peak * case.batch_size / 2 * scale)
    if case.mode == "train":  # a backward ends holding every weight's gradient
        activations = max(activations, _bytes(built.model.parameters()))
    needed = _input_bytes(case) + activations
    if device.type != "cpu":  # the weights are still on the host
        needed += _bytes(built.model.parameters()) + _bytes(built.model.buffers())
    return needed


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _input_bytes(case: CaseSpec) -> int:
    return case.batch_size * 3 * case.resolution**2 * 4


def check_fits(case: CaseSpec, built: BuiltModel, device: torch.device, cache: dict[Any, Any]) -> None:
    """Raises DeviceError (a `skipped` row) when the case cannot fit in the memory available."""
    available = available_bytes(device)
    if available is None:
        return
    allowed = MEMORY_HEADROOM * available
    weights = _bytes(built.model.parameters())
    if SCREEN_FACTOR * _input_bytes(case) + SCREEN_FLOOR_BYTES + weights <= allowed:
        return
    needed = needed_bytes(case, built, device, cache)
    if needed is not None and needed > allowed:
        raise DeviceError(
            f"needs at least {_size(needed)} (estimated before running: input batch and activations), "
            f"{_size(available)} available on {device.type}; not run"
        )


def _size(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def available_bytes(device: torch.device) -> int | None:
    """Memory a case may still allocate on `device`: free device memory plus the caching allocator's free
    blocks on CUDA; host_available() on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return host_available()


def host_available() -> int | None:
    """MemAvailable of /proc/meminfo, within a cgroup v2 memory limit, plus the free memory of this
    process's heap (the allocator setting keeps freed memory there, where MemAvailable does not count
    it); None where there is no /proc/meminfo."""
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit here
    return available + _heap_free()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def _heap_free() -> int:
    """Free bytes in glibc's heap (mallinfo2's fordblks; glibc >= 2.33), 0 elsewhere."""
    if platform.libc_ver()[0] != "glibc":
        return 0
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return 0
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)
