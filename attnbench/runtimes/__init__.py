"""Runtimes: what runs a case's model, one file per runtime, registered. The timers time the callable a
runtime builds; its output is checked against eager's first."""

from attnbench.runtimes.base import (
    EAGER, RUNTIMES, Built, RuntimeSpec, runs_torch_ops, runtime, runtime_of, threads, uses_dynamo,
)
from attnbench.runtimes.check import TOLERANCE, OutputMismatch, compare

# Importing the runtime files fills the registry, in this order.
from attnbench.runtimes import eager, inductor, onnxruntime, openvino, tensorrt  # noqa: E402,F401

__all__ = [
    "EAGER", "RUNTIMES", "TOLERANCE", "Built", "OutputMismatch", "RuntimeSpec", "compare", "runs_torch_ops",
    "runtime", "runtime_of", "threads", "uses_dynamo",
]
