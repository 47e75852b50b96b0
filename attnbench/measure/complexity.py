"""Parameters and MACs of a built model."""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore's focal_loss scripts a function at import
    from fvcore.nn import FlopCountAnalysis

from attnbench.backbones import BuiltModel, build_model
from attnbench.config import CaseSpec
from attnbench.measure.base import MeasureContext, MetricResult, metric


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, resolution: int, batch_size: int = 1) -> int:
    """fvcore's count (one per multiply-accumulate) of convolutions, linear layers and matmuls.

    Counted once at batch 1 and scaled: these MACs are linear in the batch size.
    """
    was_training = model.training
    model.eval()
    inputs = torch.zeros(1, 3, resolution, resolution)
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore's tracer calls the deprecated torch.jit
        macs = analysis.total()
    model.train(was_training)
    return int(macs) * batch_size


def baseline_params(backbone: str, context: MeasureContext) -> int:
    key = f"params:{backbone}"
    if key not in context.cache:
        context.cache[key] = count_params(build_model(backbone).model)
    return context.cache[key]


@metric("complexity")
def complexity(case: CaseSpec, built: BuiltModel, context: MeasureContext) -> MetricResult:
    params = count_params(built.model)
    macs_key = f"macs:{case.backbone}:{case.attention.label}:{case.resolution}"
    if macs_key not in context.cache:
        context.cache[macs_key] = count_macs(built.model, case.resolution)
    return MetricResult(
        {
            "params": params,
            "params_attention": params - baseline_params(case.backbone, context),
            "macs": context.cache[macs_key] * case.batch_size,
        }
    )
