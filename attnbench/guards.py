"""What keeps one case from harming the run: signals that interrupt it, a time limit, and torch's global
state restored after a case that failed or was stopped halfway."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch


class CaseTimeout(Exception):
    """A case ran past max_case_seconds."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the current group is dropped whole and the run is marked interrupted.

    A BaseException, like KeyboardInterrupt, so that a module's `except Exception` cannot swallow it.
    """

    def __init__(self, signum: int, run_dir: Path | None = None):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.run_dir = run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C and a job scheduler's kill: both end a run the same way."""


@contextmanager
def _stop_signals_handled_by(handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` inside the block, to the handlers before it after (main thread only:
    signals are delivered there)."""
    if not in_main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM is handled like Ctrl-C, so a killed job leaves a consistent run directory behind."""

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    with _stop_signals_handled_by(handler):
        yield


@contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then raise Interrupted: for the few writes that close
    a run, which a signal must not cut in half (a run left marked running, its lock held)."""
    arrived: list[int] = []
    with _stop_signals_handled_by(lambda signum, frame: arrived.append(signum)):
        yield
    if arrived:
        raise Interrupted(arrived[0])


TIMEOUT_REFIRE_S = 0.5


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raises CaseTimeout in the case's own code once `seconds` have passed (a timer signal; main thread).

    A single long native call (one huge convolution) finishes before the exception is raised. The timer
    fires again every TIMEOUT_REFIRE_S until the block ends, because an exception raised where Python
    ignores exceptions (a weakref callback, a __del__) would otherwise be lost. The exception can land
    anywhere, inside a context manager's __enter__ or __exit__ too: run the block under
    `preserved_torch_state`.
    """
    if not seconds or not in_main_thread():
        yield
        return
    state = {"active": True}

    def handler(signum: int, frame: object) -> None:
        if state["active"]:
            raise CaseTimeout(f"case exceeded max_case_seconds = {seconds:g}")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds, TIMEOUT_REFIRE_S)
    try:
        yield
    finally:
        state["active"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
