"""CUDA-graph replay of a case's step: its time without any launch or dispatch gap.

The step is captured once in a CUDA graph on its static input (warmed up on a side stream first, as
capture requires), then the graph is replayed under the same timer as the eager step. The eager latency
minus the replay is what launching the step's kernels one by one from Python costs: a module's cost
splits into the memory traffic and arithmetic it adds (the replay) and the launches it adds (the rest).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attnbench.config import TimingSpec
from attnbench.measure.prepared import Clock, PreparedCase
from attnbench.measure.timing import adaptive_repeats, make_timer

CAPTURE_WARMUP = 3
"""Calls on a side stream before capture: lazy initialisation and cuDNN's choices must happen outside it."""


def capture(prepared: PreparedCase) -> torch.cuda.CUDAGraph:
    """The case's step captured once; raises what capture raises (an op that syncs, a CPU-side branch)."""
    side = torch.cuda.Stream(prepared.device)
    side.wait_stream(torch.cuda.current_stream(prepared.device))
    with torch.cuda.stream(side):
        for _ in range(CAPTURE_WARMUP):
            prepared.step()
    torch.cuda.current_stream(prepared.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        prepared.step()
    return graph


def graph_columns(
    prepared: PreparedCase, timing: TimingSpec, clock: Clock, eager_ms: float, flush: bool
) -> dict[str, Any]:
    """graph_ms_median and launch_overhead_ms, or graph_error with the reason capture failed. `flush` is
    the group's L2 flush decision, so that replay and eager are timed alike."""
    try:
        graph = capture(prepared)
        timer = make_timer(prepared.device, clock)
        if flush:
            timer.enable_flush()
        timings = adaptive_repeats(graph.replay, timing, timer, clock)
    except Exception as error:  # a step that cannot be captured is a finding about the module, not a crash
        torch.cuda.synchronize(prepared.device)
        return {"graph_error": f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"}
    graph_ms = float(np.median(timings.latency_ms))
    return {"graph_ms_median": graph_ms, "launch_overhead_ms": eager_ms - graph_ms}
