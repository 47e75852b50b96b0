"""Signals that stop a run or a case: Ctrl-C and SIGTERM, the case time limit (SIGALRM), and the process's
last moments. No torch here, so that the command line can use it before torch is imported."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


def quit_on_stop_signals() -> None:
    """For the process's last moments, once the command is done and its files are closed: Ctrl-C or
    SIGTERM during the interpreter's shutdown (atexit callbacks, torch's teardown) ends the process at once
    with 128 + the signal, instead of a KeyboardInterrupt traceback printed from inside an atexit callback."""

    def handler(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed or broken stream has nothing left to give
                pass
        os._exit(128 + signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


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
