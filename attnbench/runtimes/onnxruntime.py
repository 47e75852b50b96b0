"""ONNX Runtime: the case's ONNX export in an InferenceSession, CPU execution provider on the CPU, CUDA on a
GPU (the onnxruntime-gpu package provides it).

Settings: intra_op_num_threads = the suite's threads, inter_op_num_threads = 1 with sequential execution
(one inference at a time, as a latency-bound server runs it), graph_optimization_level ORT_ENABLE_ALL
(constant folding, conv + activation and conv + add fusions, the NCHWc layout on x86); the optimized
graph is written to a temporary file to count its nodes (optimized_nodes).

The timed call: on the CPU, `session.run` fed the case's input batch as a NumPy array that shares the
tensor's memory, returning the output as a new NumPy array, which is what a serving process pays per
call. On CUDA, input and output stay on the device through an IOBinding (as eager's input does), and the
session runs on PyTorch's current stream so that the timer's CUDA events bracket its kernels.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnbench.config import CaseSpec, TimingSpec
from attnbench.runtimes.base import Built, runtime, threads
from attnbench.runtimes.export import EXPORTER, export_onnx, graph_ops, in_dtype

NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


@cache
def _providers() -> tuple[str, ...]:
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def _no_cuda_provider(case: CaseSpec, timing: TimingSpec) -> str | None:
    if case.device.startswith("cuda") and "CUDAExecutionProvider" not in _providers():
        return ("this onnxruntime has no CUDAExecutionProvider: on a GPU machine install onnxruntime-gpu "
                "in place of onnxruntime")
    return None


@runtime(
    "onnxruntime", description="ONNX Runtime InferenceSession on the ONNX export (CPU or CUDA provider)",
    dtypes={"cpu": ("float32",), "cuda": ("float32", "float16")},
    dtype_note="ONNX Runtime has float16 kernels on CUDA only and bfloat16 kernels for few operators",
    requires=("onnx", "onnxscript", "onnxruntime"), extra="deploy", channels_last=False,
    checks=(_no_cuda_provider,), build_estimate_s={"cpu": 15.0, "cuda": 20.0},
)
def build_onnxruntime(model: nn.Module, inputs: tuple, case: CaseSpec, timing: TimingSpec) -> Built:
    import onnxruntime as ort

    dtype = torch.float16 if case.dtype == "float16" else torch.float32
    model, inputs = in_dtype(model, inputs, dtype)
    cuda = inputs[0].device.type == "cuda"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # the warning that an NCHWc-optimized file is hardware specific
    if cuda:
        index = inputs[0].device.index or 0
        stream = torch.cuda.current_stream(inputs[0].device).cuda_stream
        providers: list = [("CUDAExecutionProvider", {"device_id": index, "user_compute_stream": str(stream)})]
    else:
        providers = ["CPUExecutionProvider"]
    with tempfile.TemporaryDirectory(prefix="attnbench-ort-") as folder:
        exported = export_onnx(model, inputs, Path(folder))
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        session = ort.InferenceSession(str(exported.path), options, providers=providers)
        optimized = graph_ops(Path(options.optimized_model_filepath))
    name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    facts = {
        "graph_nodes": exported.nodes,
        "optimized_nodes": sum(optimized.values()),
        "runtime_settings": (
            f"onnxruntime {ort.__version__}; {session.get_providers()[0]}; intra_op_num_threads={threads()}; "
            f"inter_op_num_threads=1; sequential; ORT_ENABLE_ALL; {'IOBinding' if cuda else 'numpy in, numpy out'}; "
            f"{EXPORTER}"
        ),
    }
    if not cuda:
        feed = {name: inputs[0].detach().numpy()}  # shares the tensor's memory: no copy per call

        def run_cpu(*_: torch.Tensor) -> list:
            return session.run(None, feed)

        return Built(run_cpu, facts, output=lambda outputs: torch.from_numpy(outputs[0]))
    image = inputs[0].contiguous()
    out = torch.empty(session.get_outputs()[0].shape, dtype=dtype, device=image.device)
    binding = session.io_binding()
    binding.bind_input(name, "cuda", index, NUMPY_DTYPES[dtype], tuple(image.shape), image.data_ptr())
    binding.bind_output(output_name, "cuda", index, NUMPY_DTYPES[dtype], tuple(out.shape), out.data_ptr())

    def run_cuda(*_: torch.Tensor) -> torch.Tensor:
        session.run_with_iobinding(binding)
        return out

    return Built(run_cuda, facts, output=lambda result: result.clone(), keep=(image,))
