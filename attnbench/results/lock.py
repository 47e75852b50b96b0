"""One writer per run directory: an exclusive flock on RUN_DIR/.lock, held for a whole run or resume.

The kernel drops a flock when its process dies, however it dies, so a killed run never leaves its
directory locked; and a lock file left behind unlocked is how a reader knows that a run whose meta.json
still says `running` lost its process. The file holds the writer's pid and host, for the messages. A
writer that ends normally removes the file while it still holds the lock; one that locks a file just
removed (the path now names another file, or none) tries again, so two writers never hold two files.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from attnbench.errors import ResultsError

LOCK_FILE = ".lock"


def _holder(fd: int) -> str:
    """` (pid 123 on host h)`: who wrote the lock file, as far as it says."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096) or b"{}")
        return f" (pid {holder['pid']} on {holder['host']}, since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _names(fd: int, path: Path) -> bool:
    """Whether `path` still names the open file `fd`."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


CONTENDED_TRIES, CONTENDED_WAIT_S = 10, 0.05
"""A reader checks the lock by taking it shared for an instant: a writer retries for half a second
before it calls the lock held."""


def _lock_exclusive(fd: int) -> bool:
    for attempt in range(CONTENDED_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < CONTENDED_TRIES - 1:
                time.sleep(CONTENDED_WAIT_S)
    return False


class RunLock:
    """The exclusive lock of one run directory, from acquire() to release()."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Locks `run_dir` for this process, or raises ResultsError naming the process that holds it."""
        path = Path(run_dir) / LOCK_FILE
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise ResultsError(f"cannot lock run directory {run_dir}: {error.strerror}") from None
            if not _lock_exclusive(fd):
                holder = _holder(fd)
                os.close(fd)
                raise ResultsError(
                    f"run {Path(run_dir).name} is being written by another process{holder}; a run directory "
                    "has one writer at a time: wait for it to end, or stop it and resume"
                ) from None
            if _names(fd, path):
                break
            os.close(fd)  # locked a file its writer had just removed: lock the one the path names now
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": stamp}).encode())
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # still locked: nobody can lock this file in between
        os.close(self.fd)  # closing drops the lock
        self.fd = None


def writer_alive(run_dir: Path) -> bool | None:
    """True while a process holds the run's lock, False when the lock file is left unlocked (its writer
    died without ending the run), None without a lock file (the run ended, or predates the lock)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None  # unreadable here: nothing can be said
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
