"""The operator rule table: floating-point work, multiply-accumulates and fusion class of every aten op.

torch's flop counter only knows matmuls and convolutions, and fvcore skips sigmoid, mul, mean and pooling:
exactly the operations attention gates are made of. Each row here counts one aten op (as it reaches the
dispatcher, after composite ops such as `linear` or `adaptive_avg_pool2d` have decomposed) and says how.

Conventions: each arithmetic operation (add, subtract, multiply, divide, compare) and each elementary
function (exp, sqrt, tanh, ...) is one flop; a multiply-accumulate is two; composite activations count
their parts. MACs are fvcore's: multiply-accumulates of convolutions and matrix products only. Memory
traffic is not a rule's business: every op but the ALIAS ones reads its tensor inputs and writes its
outputs (complexity.py), so a rule only says which outputs it really writes when that differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from attnbench.registry import Registry


class Fusion(Enum):
    """How the bytes_min model (complexity.py) groups an op with its neighbours."""

    ALIAS = "alias"
    """Moves no data: views, metadata queries, allocation without initialisation."""
    ANCHOR = "anchor"
    """A library kernel (convolution, matmul): starts a new fused group, accepts fused epilogues."""
    FUSIBLE = "fusible"
    """Elementwise, local pooling, row softmax, copy: joins the group that produced its newest input."""
    REDUCTION = "reduction"
    """A reduction over a whole axis: joins like FUSIBLE, but nothing joins it through its output (using
    the result on the reduced tensor needs the whole reduction first: the tensor makes a round trip)."""


@dataclass(frozen=True)
class OpCall:
    """One executed op: its aten arguments and what it returned."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out: Any

    def arg(self, index: int, name: str, default: Any = None) -> Any:
        if index < len(self.args):
            return self.args[index]
        return self.kwargs.get(name, default)

    @property
    def inputs(self) -> list[torch.Tensor]:
        return [leaf for leaf in tree_leaves((self.args, self.kwargs)) if isinstance(leaf, torch.Tensor)]

    @property
    def outputs(self) -> list[torch.Tensor]:
        return [leaf for leaf in tree_leaves(self.out) if isinstance(leaf, torch.Tensor)]

    @property
    def out_elements(self) -> int:
        return self.outputs[0].numel()

    @property
    def in_elements(self) -> int:
        return self.args[0].numel()


Count = Callable[[OpCall], int]


def _nothing(call: OpCall) -> int:
    return 0


def _all_outputs(call: OpCall) -> list[torch.Tensor]:
    return call.outputs


@dataclass(frozen=True)
class Rule:
    op: str
    flops: Count
    text: str
    """The rule written down, as the README's table shows it."""
    macs: Count = _nothing
    fusion: Fusion = Fusion.FUSIBLE
    written: Callable[[OpCall], list[torch.Tensor]] = _all_outputs
    """The outputs the op stores (max pooling's indices are not produced by inference kernels)."""


RULES: Registry[Rule] = Registry("operator rule")


def rule(
    *ops: str,
    text: str,
    macs: Count = _nothing,
    fusion: Fusion = Fusion.FUSIBLE,
    written: Callable[[OpCall], list[torch.Tensor]] = _all_outputs,
) -> Callable[[Count], Count]:
    """Registers the decorated flop count for each aten op in `ops` (overload packets, e.g. aten.mean)."""

    def decorate(flops: Count) -> Count:
        for op in ops:
            RULES.add(op, Rule(op, flops, text, macs, fusion, written))
        return flops

    return decorate


def per_output(flops_per_element: int) -> Count:
    return lambda call: flops_per_element * call.out_elements


def elementwise(*ops: str, flops: int, text: str) -> None:
    rule(*ops, text=f"{flops} per output element: {text}")(per_output(flops))


# --- convolutions and matrix products ----------------------------------------------------------------


def conv_macs(call: OpCall) -> int:
    # weight is (C_out, C_in/groups, *kernel); transposed, (C_in, C_out/groups, *kernel) and every input
    # element is scattered through it.
    positions = call.in_elements if call.arg(6, "transposed") else call.out_elements
    return positions * math.prod(call.args[1].shape[1:])


@rule(
    "aten.convolution",
    text="2 per MAC + 1 per output element with bias; MACs = output elements × C_in/groups × kernel elements",
    macs=conv_macs,
    fusion=Fusion.ANCHOR,
)
def conv_flops(call: OpCall) -> int:
    return 2 * conv_macs(call) + (call.out_elements if call.arg(2, "bias") is not None else 0)


def matmul_macs(call: OpCall) -> int:
    """mm(a, b), bmm(a, b): output elements × a's last dimension (the contracted length)."""
    return call.out_elements * call.args[0].shape[-1]


def addmm_macs(call: OpCall) -> int:
    """addmm(c, a, b), baddbmm(c, a, b): as mm(a, b)."""
    return call.out_elements * call.args[1].shape[-1]


@rule("aten.mm", "aten.bmm", text="2 per MAC; MACs = output elements × contracted length",
      macs=matmul_macs, fusion=Fusion.ANCHOR)
def matmul_flops(call: OpCall) -> int:
    return 2 * matmul_macs(call)


@rule("aten.addmm", "aten.baddbmm", text="2 per MAC + 1 per output element (the added term)",
      macs=addmm_macs, fusion=Fusion.ANCHOR)
def addmm_flops(call: OpCall) -> int:
    return 2 * addmm_macs(call) + call.out_elements


# --- normalisation -------------------------------------------------------------------------------


@rule(
    "aten._native_batch_norm_legit_no_training",
    text="2 per element (x·scale + shift) + 5 per channel (fold: add eps, rsqrt, × weight; mean × scale, subtract)",
)
def batch_norm_eval_flops(call: OpCall) -> int:
    return 2 * call.in_elements + 5 * call.args[0].shape[1]


@rule(
    "aten.native_layer_norm",
    text="per element: mean 1, variance 3 (subtract, square, sum), normalise 1, + 1 each for weight and bias; "
    "per row: 2 (add eps, rsqrt)",
)
def layer_norm_flops(call: OpCall) -> int:
    x, normalized_shape = call.args[0], call.args[1]
    affine = sum(call.arg(i, name) is not None for i, name in ((2, "weight"), (3, "bias")))
    rows = x.numel() // max(math.prod(normalized_shape), 1)
    return (5 + affine) * x.numel() + 2 * rows


# --- elementwise ---------------------------------------------------------------------------------

elementwise("aten.relu", "aten.relu_", flops=1, text="max(x, 0)")
elementwise("aten.hardtanh", "aten.hardtanh_", flops=2, text="min and max (ReLU6)")
elementwise("aten.sigmoid", "aten.sigmoid_", flops=4, text="1 / (1 + exp(-x)): negate, exp, add, divide")
elementwise("aten.tanh", "aten.tanh_", "aten.exp", "aten.log", "aten.sqrt", "aten.rsqrt", "aten.abs",
            "aten.neg", "aten.reciprocal", flops=1, text="one elementary function")
elementwise("aten.hardsigmoid", "aten.hardsigmoid_", flops=4, text="relu6(x + 3) / 6: add, max, min, divide")
elementwise("aten.hardswish", "aten.hardswish_", flops=5, text="x · relu6(x + 3) / 6")
elementwise("aten.silu", "aten.silu_", flops=5, text="x · sigmoid(x)")


@rule("aten.gelu", "aten.gelu_", text="5 per output element: x · (1 + erf(x / √2)) / 2; 9 with the tanh approximation")
def gelu_flops(call: OpCall) -> int:
    # tanh form: x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))) / 2, the cube two multiplies
    return (9 if call.arg(1, "approximate", "none") == "tanh" else 5) * call.out_elements

elementwise("aten.mul", "aten.mul_", "aten.div", "aten.div_", "aten.maximum", "aten.minimum",
            flops=1, text="one arithmetic operation (broadcast operands read once)")
elementwise("aten.pow", flops=1, text="x^p as one elementary function (a square is one multiply)")


@rule("aten.add", "aten.add_", "aten.sub", "aten.sub_", "aten.rsub",
      text="1 per output element, 2 when alpha ≠ 1 (the scaling multiply)")
def add_flops(call: OpCall) -> int:
    return (1 if call.kwargs.get("alpha", 1) == 1 else 2) * call.out_elements


elementwise("aten.clamp_min", "aten.clamp_min_", "aten.clamp_max", "aten.clamp_max_", flops=1,
            text="one compare")


@rule("aten.clamp", "aten.clamp_", text="1 per output element per given bound")
def clamp_flops(call: OpCall) -> int:
    bounds = sum(call.arg(i, name) is not None for i, name in ((1, "min"), (2, "max")))
    return bounds * call.out_elements


# --- reductions and pooling ----------------------------------------------------------------------


@rule("aten.mean", fusion=Fusion.REDUCTION, text="1 per input element: (in − out) additions + out divisions")
def mean_flops(call: OpCall) -> int:
    return call.in_elements


@rule("aten.sum", "aten.amax", "aten.amin", fusion=Fusion.REDUCTION, text="(in − out): one add or compare per reduced element")
def fold_flops(call: OpCall) -> int:
    return call.in_elements - call.out_elements


@rule("aten.var", fusion=Fusion.REDUCTION, text="4 per input element: mean (in), subtract, square, sum (in − out), divide (out)")
def var_flops(call: OpCall) -> int:
    return 4 * call.in_elements


@rule("aten.std", fusion=Fusion.REDUCTION, text="as var + 1 sqrt per output element")
def std_flops(call: OpCall) -> int:
    return var_flops(call) + call.out_elements


@rule("aten.linalg_vector_norm", fusion=Fusion.REDUCTION, text="2 per input element: square (in), sum (in − out), sqrt (out)")
def norm_flops(call: OpCall) -> int:
    return 2 * call.in_elements


@rule("aten._softmax", text="per row of n: max (n−1), subtract (n), exp (n), sum (n−1), divide (n)")
def softmax_flops(call: OpCall) -> int:
    rows = call.in_elements // max(call.args[0].shape[call.args[1]], 1)
    return 5 * call.in_elements - 2 * rows


def window_taps(length: int, out_length: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Input positions summed over all output windows along one axis, padding excluded."""
    return sum(
        sum(0 <= o * stride - padding + t * dilation < length for t in range(kernel)) for o in range(out_length)
    )


def _along(value: int | list[int], axis: int) -> int:
    """One axis of a pooling argument given as an int, [k] or [kh, kw]."""
    if isinstance(value, int):
        return value
    return value[axis] if len(value) > 1 else value[0]


def pooled_taps(call: OpCall, dilation: Any = 1) -> int:
    """Σ over output positions of the input positions in their window (exact at borders)."""
    x, out = call.args[0], call.outputs[0]
    kernel = call.args[1]
    stride = call.arg(2, "stride") or kernel
    padding = call.arg(3, "padding", 0)
    taps = math.prod(x.shape[:-2])
    for axis in (0, 1):
        taps *= window_taps(
            x.shape[-2 + axis], out.shape[-2 + axis], _along(kernel, axis), _along(stride, axis),
            _along(padding, axis), _along(dilation, axis),
        )
    return taps


@rule(
    "aten.max_pool2d_with_indices",
    text="window taps − 1 compares per output element (borders exact); the indices are not written",
    written=lambda call: call.outputs[:1],
)
def max_pool_flops(call: OpCall) -> int:
    return pooled_taps(call, call.arg(4, "dilation", 1)) - call.out_elements


@rule("aten.avg_pool2d", text="window taps per output element: (taps − 1) adds + 1 divide (borders exact)")
def avg_pool_flops(call: OpCall) -> int:
    return pooled_taps(call)


def adaptive_taps(length: int, out_length: int) -> int:
    return sum(math.ceil((o + 1) * length / out_length) - (o * length) // out_length for o in range(out_length))


@rule("aten._adaptive_avg_pool2d", fusion=Fusion.REDUCTION, text="window size per output element: (size − 1) adds + 1 divide")
def adaptive_avg_pool_flops(call: OpCall) -> int:
    x, out = call.args[0], call.outputs[0]
    return math.prod(x.shape[:-2]) * adaptive_taps(x.shape[-2], out.shape[-2]) * adaptive_taps(
        x.shape[-1], out.shape[-1]
    )


# --- data movement and views ---------------------------------------------------------------------

rule("aten.cat", "aten.stack", "aten.clone", "aten.copy_", "aten._to_copy", "aten.index_select",
     text="0: moves data, computes nothing")(_nothing)
rule("aten.zeros", "aten.zeros_like", "aten.ones", "aten.full", "aten.eye", "aten.fill_", "aten.zero_",
     text="0: writes its output, computes nothing")(_nothing)
rule(
    "aten.view", "aten._unsafe_view", "aten.t", "aten.transpose", "aten.permute", "aten.unsqueeze",
    "aten.squeeze", "aten.expand", "aten.slice", "aten.select", "aten.split", "aten.split_with_sizes",
    "aten.unbind", "aten.diagonal", "aten.alias", "aten.detach", "aten.as_strided", "aten.as_strided_", "aten.empty",
    "prim.device",
    text="0: a view, a metadata query or an uninitialised allocation; moves no data",
    fusion=Fusion.ALIAS,
)(_nothing)


def table() -> list[tuple[str, str]]:
    """(ops, rule) rows, ops sharing a rule on one row, in registration order: the README's table."""
    rows: dict[str, list[str]] = {}
    for name, entry in RULES.items():
        rows.setdefault(entry.text, []).append(name)
    return [(", ".join(ops), text) for text, ops in rows.items()]
