"""Torch's global state restored after a case that failed or was stopped halfway (by an exception, a
time limit or a signal from attnbench.signals, which can land inside a context manager's enter or exit)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


AUTOCAST_DEVICES = ("cpu", "cuda")
_INFERENCE_MODE_OFF: list[object] = []
"""Guards that switched off an inference mode left on by a stopped case. They live as long as the
process: freeing one would restore the state it was entered in, inference mode on."""


def _autocast_nesting() -> int:
    nesting = torch.autocast_increment_nesting() - 1
    torch.autocast_decrement_nesting()
    return nesting


@dataclass(frozen=True)
class TorchState:
    """The thread-global switches a case's step turns on and off: grad mode, inference mode, autocast."""

    grad: bool
    inference: bool
    autocast: tuple[tuple[str, bool, torch.dtype], ...]
    autocast_nesting: int

    @classmethod
    def now(cls) -> TorchState:
        return cls(
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
            tuple(
                (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
                for device in AUTOCAST_DEVICES
            ),
            _autocast_nesting(),
        )

    def restore(self) -> None:
        """Undoes what an exception inside a context manager's __enter__ or __exit__ left switched on."""
        if torch.is_inference_mode_enabled() and not self.inference:
            guard = torch._C._InferenceMode(False)
            guard.__enter__()
            _INFERENCE_MODE_OFF.append(guard)
        torch.set_grad_enabled(self.grad)
        for device, enabled, dtype in self.autocast:
            torch.set_autocast_enabled(device, enabled)
            torch.set_autocast_dtype(device, dtype)
        for _ in range(_autocast_nesting() - self.autocast_nesting):
            torch.autocast_decrement_nesting()
        if _autocast_nesting() == 0:
            torch.clear_autocast_cache()


@contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Restores grad mode, inference mode and autocast after the block, however it ends."""
    before = TorchState.now()
    try:
        yield
    finally:
        before.restore()
