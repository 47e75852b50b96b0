"""The per-process settings timings depend on, applied alike wherever cases run (the runner, every
isolated worker, `attnbench profile`)."""

from __future__ import annotations

import gc
from typing import Any

import torch

from attnbench.config import TimingSpec
from attnbench.errors import DeviceError
from attnbench.measure.allocator import configure_allocator


def resolve_device(requested: str, asked_by: str = "device 'cuda' was requested") -> torch.device:
    """`auto` is CUDA when available, else the CPU; asking for CUDA without it is an error, whose message
    starts with `asked_by`."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{asked_by} but CUDA is not available here; accepted: cpu, auto")
    return torch.device(requested)


def configure_process(threads: int | None, timing: TimingSpec) -> dict[str, Any]:
    """Applies threads, cuDNN's benchmark mode, TF32 and the host allocator setting; returns what
    meta.json records about them (TF32 as it is in effect, whether set or left at PyTorch's defaults)."""
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = timing.cudnn_benchmark
    if timing.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = timing.tf32
        torch.backends.cudnn.allow_tf32 = timing.tf32
    return {
        "cudnn_benchmark": timing.cudnn_benchmark,
        "tf32": {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "set_by_suite": timing.tf32 is not None,
        },
        "low_precision": timing.low_precision,
        "allocator": configure_allocator(),
    }


def release_memory(device: torch.device) -> None:
    """Frees what the last case left: its tensors (cycles included) and, on CUDA, the allocator's cache.

    Call it outside any `except` block: a live traceback still holds the failing frames' tensors.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
