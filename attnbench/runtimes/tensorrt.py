"""TensorRT on CUDA: the case's ONNX export parsed by TensorRT's ONNX parser and built into an engine.

TensorRT is not part of the `deploy` extra: it needs NVIDIA's wheels and a CUDA machine (`pip install
tensorrt` there); where it is missing, its cases are skipped with that reason. float16 and bfloat16 cases
build the float32 export with the FP16 or BF16 builder flag (TensorRT then picks each layer's precision);
TF32 follows the run's cuDNN setting, as eager's float32 convolutions do. optimized_nodes is the engine's
layer count after TensorRT's fusions.

The timed call: `execute_async_v3` on PyTorch's current stream, input and output bound to device tensors
(as eager's input stays on the device), so that the timer's CUDA events bracket the engine's kernels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from attnbench.config import CaseSpec, TimingSpec
from attnbench.runtimes.base import Built, runtime
from attnbench.runtimes.export import EXPORTER, export_onnx, in_dtype

WORKSPACE_BYTES = 4 << 30
BUILDER_FLAGS = {"float16": "FP16", "bfloat16": "BF16"}


def _no_bf16_flag(case: CaseSpec, timing: TimingSpec) -> str | None:
    import tensorrt as trt

    if case.dtype == "bfloat16" and not hasattr(trt.BuilderFlag, "BF16"):
        return f"TensorRT {trt.__version__} has no bfloat16 builder flag (TensorRT 9 or later has)"
    return None


def _engine(path: Path, dtype: str):
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # implied since TensorRT 10
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser refused the export: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    flags = []
    if dtype in BUILDER_FLAGS:
        config.set_flag(getattr(trt.BuilderFlag, BUILDER_FLAGS[dtype]))
        flags.append(BUILDER_FLAGS[dtype])
    if torch.backends.cudnn.allow_tf32:
        flags.append("TF32")  # on by default in a builder config
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build an engine from the export")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    return engine, network.num_layers, flags


@runtime(
    "tensorrt", description="TensorRT engine built from the ONNX export",
    dtypes={"cuda": ("float32", "float16", "bfloat16")},
    requires=("onnx", "onnxscript", "tensorrt"), install="pip install tensorrt (NVIDIA's wheels, on a CUDA machine)",
    channels_last=False, checks=(_no_bf16_flag,), build_estimate_s={"cuda": 60.0},
)
def build_tensorrt(model: nn.Module, inputs: tuple, case: CaseSpec, timing: TimingSpec) -> Built:
    import tensorrt as trt

    model, inputs = in_dtype(model, inputs, torch.float32)  # low precision is a builder flag on the float32 graph
    with tempfile.TemporaryDirectory(prefix="attnbench-tensorrt-") as folder:
        exported = export_onnx(model, inputs, Path(folder))
        engine, parsed_layers, flags = _engine(exported.path, case.dtype)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    input_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    image = inputs[0].contiguous()
    out = torch.empty(tuple(context.get_tensor_shape(output_name)), dtype=torch.float32, device=image.device)
    context.set_tensor_address(input_name, image.data_ptr())
    context.set_tensor_address(output_name, out.data_ptr())
    stream = torch.cuda.current_stream(image.device)
    facts = {
        "graph_nodes": exported.nodes,
        "optimized_nodes": engine.num_layers,
        "runtime_settings": (f"tensorrt {trt.__version__}; builder flags {'+'.join(flags) or 'none'}; "
                             f"{parsed_layers} layers parsed; execute_async_v3 on the current stream; {EXPORTER}"),
    }

    def run(*_: torch.Tensor) -> torch.Tensor:
        context.execute_async_v3(stream.cuda_stream)
        return out

    return Built(run, facts, output=lambda result: result.clone(), keep=(engine, image))
