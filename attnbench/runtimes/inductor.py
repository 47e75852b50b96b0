"""torch.compile: the model captured by dynamo and compiled by the suite's `compile_backend` (inductor by
default), once per case, on its first call; the comparison group resets dynamo before and after
(group.compiling), so each case compiles cold and stays compiled while its group is timed."""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch
from torch import nn

from attnbench.config import CPU_DTYPES, DTYPES, MODES, CaseSpec, TimingSpec
from attnbench.runtimes.base import Built, runtime

GRAPH_OPS = ("call_function", "call_method", "call_module")
"""FX node kinds that compute; placeholders, attributes and outputs do not."""


def _dynamo_unsupported(case: CaseSpec, timing: TimingSpec) -> str | None:
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    return None


def _no_compiler(case: CaseSpec, timing: TimingSpec) -> str | None:
    cxx = os.environ.get("CXX", "g++")
    if case.device == "cpu" and timing.compile_backend == "inductor" and not shutil.which(cxx):
        return f"torch.compile's inductor backend needs a C++ compiler on the CPU; {cxx!r} not found"
    return None


def counting_backend(name: str, facts: dict[str, Any]):
    """The backend `name`, counting what it receives and makes: the operations of dynamo's graphs
    (graph_nodes) and, for inductor, the kernels it generates for them (optimized_nodes; convolutions
    and matmuls that call library kernels are not generated, so they are not counted)."""
    from torch._dynamo import lookup_backend
    from torch._inductor import metrics

    compiler = lookup_backend(name)

    def backend(graph: torch.fx.GraphModule, example_inputs: list) -> Any:
        facts["graph_nodes"] = facts.get("graph_nodes", 0) + sum(n.op in GRAPH_OPS for n in graph.graph.nodes)
        before = metrics.generated_kernel_count
        compiled = compiler(graph, example_inputs)
        if name == "inductor":
            facts["optimized_nodes"] = facts.get("optimized_nodes", 0) + metrics.generated_kernel_count - before
        return compiled

    return backend


@runtime(
    "inductor", description="torch.compile(model, dynamic=False) with the suite's compile_backend",
    dtypes={"cpu": CPU_DTYPES, "cuda": DTYPES}, modes=MODES, torch_step=True, dynamo=True,
    checks=(_dynamo_unsupported, _no_compiler), build_estimate_s={"cpu": 60.0, "cuda": 40.0},
)
def build_inductor(model: nn.Module, inputs: tuple, case: CaseSpec, timing: TimingSpec) -> Built:
    facts: dict[str, Any] = {"runtime_settings": f"backend={timing.compile_backend}; dynamic=False; torch {torch.__version__}"}
    compiled = torch.compile(model, backend=counting_backend(timing.compile_backend, facts), dynamic=False)
    return Built(compiled, facts=facts, compiles_on_first_call=True)
