"""The host allocator setting a CPU benchmark needs: glibc keeps freed memory instead of unmapping it.

glibc serves allocations above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh mmap
and unmaps them on free, so a tensor that large is new memory on every call: each of its pages
faults and is zeroed by the kernel, and that cost lands in the timed region, though a long-running
server with a caching allocator would not pay it. We switch mmap off (M_MMAP_MAX = 0) and raise the
trim threshold so the heap keeps what it has grown to; every call then reuses the same memory. The
price: a run holds its peak host memory until it exits. Not glibc: nothing is changed, and meta.json
says so.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest it accepts


def configure_allocator() -> dict[str, Any]:
    """Applies the setting to this process and returns what meta.json records about it."""
    family, version = platform.libc_ver()
    if family != "glibc":
        return {"libc": family or "unknown", "configured": False}
    libc = ctypes.CDLL(None)
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return {
        "libc": f"glibc {version}",
        "configured": applied,
        "mmap_max": 0,
        "trim_threshold_bytes": TRIM_THRESHOLD_BYTES,
    }
