"""Files and folders a command writes, checked before the work that fills them.

A profile or a report can take minutes; a path it cannot write must fail first, in one line, not after
the work with a traceback. Missing parent folders are created, as for a run's results root.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnbench.errors import ResultsError


def prepare_output(path: Path, what: str, folder: bool = False) -> Path:
    """`path` ready to be written as a file (or, with `folder`, a folder of files): its parent folders
    exist and are writable, and nothing of the other kind is in the way. `what` names it in errors."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ResultsError(f"{what} {path} is a file; accepted: a folder (created if missing)")
    if not folder and path.is_dir():
        raise ResultsError(f"{what} {path} is a folder; accepted: a file path")
    target = path if folder else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in (target, *target.parents) if p.exists() and not p.is_dir())
        raise ResultsError(f"{what} {path}: {blocking} is a file, not a folder") from None
    except OSError as error:
        raise ResultsError(f"{what} {path}: cannot create folder {target}: {error.strerror}") from None
    writable = path if path.exists() else target
    if not os.access(writable, os.W_OK) or not os.access(target, os.W_OK | os.X_OK):
        raise ResultsError(f"{what} {path}: {writable} is not writable")
    return path


def write_text(path: Path, text: str, what: str) -> None:
    """Writes `text` to a prepared path; a failure now (a full disk) is one line too."""
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise ResultsError(f"cannot write {what} {path}: {error.strerror}") from None
