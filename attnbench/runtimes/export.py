"""One ONNX export per case, shared by the runtimes that start from ONNX (ONNX Runtime, OpenVINO, TensorRT).

The exporter is torch.onnx.export with `dynamo=True` (torch.export, then onnxscript's optimizer, which
folds eval BatchNorms into their convolutions and constants into initializers), at opset 18: the exporter
PyTorch maintains; the older TorchScript exporter is deprecated. The graph is static (no dynamic axes):
the case's batch size and resolution, as every runtime then optimizes for exactly that shape.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

OPSET = 18
EXPORTER = f"torch.onnx.export(dynamo=True, opset {OPSET})"
DATA_OPS = ("Constant",)
"""ONNX nodes that hold data rather than compute; not counted."""


@dataclass(frozen=True)
class Exported:
    path: Path
    nodes: int
    """Computing nodes of the exported graph (graph_nodes)."""
    ops: Counter


def graph_ops(path: Path) -> Counter:
    """Computing nodes of an ONNX file by operator type."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return Counter(node.op_type for node in graph.node if node.op_type not in DATA_OPS)


def export_onnx(model: nn.Module, inputs: tuple, folder: Path) -> Exported:
    """`model` (in eval mode) exported on `inputs` to folder/model.onnx."""
    path = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        program = torch.onnx.export(model, inputs, dynamo=True, opset_version=OPSET, optimize=True, verbose=False)
    program.save(str(path))
    ops = graph_ops(path)
    return Exported(path, sum(ops.values()), ops)


def in_dtype(model: nn.Module, inputs: tuple, dtype: torch.dtype) -> tuple[nn.Module, tuple]:
    """The model and inputs in `dtype`: themselves when they already are, else converted copies (the
    prepared model stays as the other metrics need it)."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.dtype == dtype:
        converted = model
    else:
        converted = copy.deepcopy(model).to(dtype)
    return converted, tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs)


def ops_text(ops: Counter) -> str:
    """`Conv:20 Mul:8 ...`, most frequent first: what a graph is made of."""
    return " ".join(f"{op}:{count}" for op, count in ops.most_common())
