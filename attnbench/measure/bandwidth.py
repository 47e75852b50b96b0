"""The device's copy bandwidth, measured once per run, and each case's achieved bandwidth against it.

A copy reads and writes every byte once, so bytes moved = 2 x buffer size, the same convention as
`bytes_eager` (bytes read + bytes written). The buffer is far larger than any cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attnbench.config import TimingSpec
from attnbench.measure.prepared import Clock
from attnbench.measure.timing import adaptive_repeats, make_timer

COPY_BUFFER_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}
COPY_TIMING = TimingSpec(warmup=2, min_repeats=5, max_repeats=20, max_seconds=0.25)


def copy_bandwidth_gbs(device: torch.device, clock: Clock, buffer_bytes: int | None = None) -> dict[str, Any]:
    """meta.json fields: the median copy bandwidth in GB/s (1e9 bytes/s) and the buffer it used."""
    size = buffer_bytes or COPY_BUFFER_BYTES[device.type]
    source = torch.ones(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    timings = adaptive_repeats(lambda: target.copy_(source), COPY_TIMING, make_timer(device, clock), clock)
    seconds = float(np.median(timings.latency_ms)) / 1e3
    return {"copy_bandwidth_gbs": 2 * size / seconds / 1e9, "copy_buffer_bytes": size}


def roofline_columns(row: dict[str, Any], copy_gbs: float | None) -> dict[str, float]:
    """achieved_bandwidth_gbs and bandwidth_fraction, where the case has both bytes_eager and a latency."""
    moved, median_ms = row.get("bytes_eager"), row.get("latency_ms_median")
    if moved in (None, "") or median_ms in (None, "") or not median_ms > 0:
        return {}
    achieved = float(moved) / (float(median_ms) / 1e3) / 1e9
    columns = {"achieved_bandwidth_gbs": achieved}
    if copy_gbs:
        columns["bandwidth_fraction"] = achieved / copy_gbs
    return columns
