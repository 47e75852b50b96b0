"""Correctness first: a runtime's output on the case's input against eager PyTorch's, before any timing.

max_abs_diff = max |y_runtime - y_eager|; max_rel_diff = max_abs_diff / max |y_eager|: relative to the
output's scale, not element by element (logits near zero would make elementwise ratios meaningless). The
tolerance on max_rel_diff follows the arithmetic's precision: float32 1e-3 (exported graphs fold
BatchNorm into the convolutions and reorder sums; measured differences on the CPU are about 1e-6),
float16 and TF32 (CUDA float32 convolutions with TF32 on: 10 mantissa bits) 1e-2, bfloat16 (7 mantissa
bits; eager against OpenVINO measured about 5e-3) 5e-2. A runtime beyond it gives an error row with the
numbers, never a latency: its time would be that of another computation.
"""

from __future__ import annotations

import torch

from attnbench.errors import AttnbenchError

TOLERANCE = {"float32": 1e-3, "tf32": 1e-2, "float16": 1e-2, "bfloat16": 5e-2}


class OutputMismatch(AttnbenchError):
    """A runtime whose output disagrees with eager's; `columns` holds the differences for the row."""

    def __init__(self, message: str, columns: dict[str, float]):
        super().__init__(message)
        self.columns = columns


def precision(dtype: str, device: torch.device) -> str:
    """The arithmetic a case's dtype gets: float32 runs in TF32 on CUDA while cuDNN allows it."""
    if dtype == "float32" and device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return dtype


def compare(reference: torch.Tensor, output: torch.Tensor, runtime: str, dtype: str, device: torch.device) -> dict[str, float]:
    """The difference columns; raises OutputMismatch beyond the tolerance of the case's precision."""
    reference = reference.detach().float()
    output = output.detach().to(reference.device).float()
    if output.shape != reference.shape:
        raise OutputMismatch(
            f"runtime {runtime!r} returned shape {tuple(output.shape)}, eager {tuple(reference.shape)}", {}
        )
    scale = float(reference.abs().max())
    abs_diff = float((output - reference).abs().max())  # nan when the runtime produced nan
    rel_diff = abs_diff / scale if scale > 0 else abs_diff
    columns = {"max_abs_diff": abs_diff, "max_rel_diff": rel_diff}
    arithmetic = precision(dtype, device)
    tolerance = TOLERANCE[arithmetic]
    if not rel_diff <= tolerance:
        raise OutputMismatch(
            f"runtime {runtime!r} disagrees with eager: max |diff| {abs_diff:.3g} is {rel_diff:.3g} of the output's "
            f"largest magnitude {scale:.3g}, over the {arithmetic} tolerance {tolerance:g}",
            columns,
        )
    return columns
