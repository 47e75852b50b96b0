"""Each attention module timed alone, on the input it receives inside the backbone.

One forward of the network, with pre-forward hooks on the inserted sites, records each instance's
input shapes, dtypes and memory formats. Instances with the same structure and the same inputs are
timed once (ResNet-50 has 16 SE instances but 4 distinct ones) with the network's timer, mode,
precision and compile setting. `module_latency_ms_median` is the sum over all instances of their
group's median: the attention's own cost per network forward (or train step), to set beside its
share of the network's latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnbench.config import TimingSpec
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.prepared import PreparedCase, autocast_context, memory_format, prepare_step, stored_dtype
from attnbench.measure.timing import adaptive_repeats, apply_flush_rule, make_timer
from attnbench.seeds import random_input


@dataclass(frozen=True)
class TensorSpec:
    """What a fresh random input needs to match a captured one."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    channels_last: bool

    def make(self, device: torch.device, requires_grad: bool) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        tensor = random_input(self.shape, device, self.dtype).contiguous(memory_format=fmt)
        return tensor.requires_grad_(requires_grad and self.dtype.is_floating_point)


def _spec(value):
    if not isinstance(value, torch.Tensor):
        return value
    channels_last = value.dim() == 4 and not value.is_contiguous() and value.is_contiguous(
        memory_format=torch.channels_last
    )
    return TensorSpec(tuple(value.shape), value.dtype, channels_last)


def capture_site_inputs(prepared: PreparedCase, timing: TimingSpec) -> list[tuple]:
    """The positional arguments each site's module received in one eval forward of the prepared model (on
    its device, dtype and memory format), as specs."""
    case, built, device = prepared.case, prepared.built, prepared.device
    captured: dict[int, tuple] = {}

    def record(index: int):
        def hook(module: nn.Module, args: tuple) -> None:
            captured.setdefault(index, tuple(_spec(arg) for arg in args))

        return hook

    model, dtype = built.model, stored_dtype(case, timing)
    image = random_input((1, 3, case.resolution, case.resolution), device, dtype)
    inputs = image.contiguous(memory_format=memory_format(case))
    handles = [site.module.register_forward_pre_hook(record(i)) for i, site in enumerate(built.sites)]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode(), autocast_context(case, timing, device):
            model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    batch = case.batch_size
    # Captured at batch 1 to keep the capture cheap; every site's input scales with the batch.
    return [
        tuple(
            TensorSpec((batch, *arg.shape[1:]), arg.dtype, arg.channels_last) if isinstance(arg, TensorSpec) else arg
            for arg in captured[i]
        )
        for i in range(len(built.sites))
    ]


@metric("module_latency")
def module_latency(prepared: PreparedCase, context: MeasureContext) -> MetricResult:
    case, built = prepared.case, prepared.built
    if not built.sites:
        return MetricResult({"module_latency_ms_median": 0.0})
    specs = capture_site_inputs(prepared, context.timing)
    keys = [(repr(site.module), args) for site, args in zip(built.sites, specs)]
    representative: dict[tuple, nn.Module] = {}
    for key, site in zip(keys, built.sites):
        representative.setdefault(key, site.module)
    total_ms = 0.0
    for key, count in Counter(keys).items():
        module, args = representative[key], key[1]
        inputs = tuple(
            arg.make(context.device, case.mode == "train") if isinstance(arg, TensorSpec) else arg for arg in args
        )
        alone = prepare_step(case, module, inputs, context.device, context.timing, context.clock, optimize=False)
        timer = make_timer(context.device, context.clock)
        apply_flush_rule(timer, context.timing.l2_flush, alone.working_set_bytes)
        timings = adaptive_repeats(alone.step, context.timing, timer, context.clock)
        total_ms += count * float(np.median(timings.latency_ms))
    return MetricResult({"module_latency_ms_median": total_ms})
