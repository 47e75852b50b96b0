"""OpenVINO on the CPU: the case's ONNX export read by OpenVINO and compiled for its CPU plugin.

Settings: INFERENCE_NUM_THREADS = the suite's threads, PERFORMANCE_HINT = LATENCY (one stream, one
request at a time) and INFERENCE_PRECISION_HINT set explicitly: `f32` for float32 cases, because on a CPU
with bfloat16 support (AVX512_BF16, AMX) OpenVINO's default is to run float32 models in bfloat16, and
`bf16` for bfloat16 cases (the float32 export run at bfloat16 precision, where the CPU supports it).
optimized_nodes counts the executable nodes of the compiled model (`get_runtime_model()`: constants,
inputs and outputs left out), after OpenVINO's fusions.

The timed call: one synchronous `InferRequest.infer` fed the case's input batch as a NumPy array it reads
in place (share_inputs), returning the output as a NumPy array of its own (share_outputs off), as ONNX
Runtime's `run` does.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from functools import cache
from pathlib import Path

import torch
from torch import nn

from attnbench.config import CaseSpec, TimingSpec
from attnbench.runtimes.base import Built, runtime, threads
from attnbench.runtimes.export import EXPORTER, export_onnx, in_dtype

PRECISION_HINTS = {"float32": "f32", "bfloat16": "bf16"}
DATA_LAYERS = ("Input", "Output", "Const", "Parameter", "Result", "Constant")
"""Nodes of a runtime model that hold or pass data rather than compute."""


@cache
def _capabilities() -> tuple[str, ...]:
    import openvino

    return tuple(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _no_bfloat16(case: CaseSpec, timing: TimingSpec) -> str | None:
    if case.dtype == "bfloat16" and "BF16" not in _capabilities():
        return "OpenVINO reports no bfloat16 support on this CPU (it needs AVX512_BF16 or AMX)"
    return None


def runtime_ops(compiled) -> Counter:
    """Executable nodes of a compiled model by layer type (OpenVINO's own names: Convolution, Subgraph, ...)."""
    ops: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind not in DATA_LAYERS:
            ops[kind] += 1
    return ops


@runtime(
    "openvino", description="OpenVINO CPU plugin on the ONNX export, latency hint",
    dtypes={"cpu": ("float32", "bfloat16")},
    requires=("onnx", "onnxscript", "openvino"), extra="deploy", channels_last=False,
    checks=(_no_bfloat16,), build_estimate_s={"cpu": 15.0},
)
def build_openvino(model: nn.Module, inputs: tuple, case: CaseSpec, timing: TimingSpec) -> Built:
    import openvino

    model, inputs = in_dtype(model, inputs, torch.float32)  # bfloat16 is a precision hint on the float32 graph
    core = openvino.Core()
    config = {
        "INFERENCE_NUM_THREADS": threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[case.dtype],
    }
    with tempfile.TemporaryDirectory(prefix="attnbench-openvino-") as folder:
        exported = export_onnx(model, inputs, Path(folder))
        compiled = core.compile_model(core.read_model(str(exported.path)), "CPU", config)
    request = compiled.create_infer_request()
    feed = {0: inputs[0].detach().numpy()}
    settings = "; ".join(f"{key}={value}" for key, value in config.items())
    facts = {
        "graph_nodes": exported.nodes,
        "optimized_nodes": sum(runtime_ops(compiled).values()),
        "runtime_settings": f"openvino {openvino.__version__}; CPU; {settings}; numpy in, numpy out; {EXPORTER}",
    }

    def run(*_: torch.Tensor):
        return request.infer(feed, share_inputs=True, share_outputs=False)

    return Built(run, facts, output=lambda result: torch.from_numpy(result[0]))
