"""Parameters, MACs, FLOPs, memory traffic and the parameter-formula check of a built model.

Counting runs the model on fake tensors (shapes only, no arithmetic) under torch's FlopCounterMode, whose
`_count_flops` sees every executed aten op with its module scope; each op is counted by the rule table in
flops.py instead of torch's matmul/conv-only registry. Every quantity is affine in the batch size (the
parameters are read once per forward whatever the batch), so two counts, at batch 1 and 2, give all
batch sizes; they are cached per backbone, attention entry, resolution and dtype.

Memory traffic, with floating tensors stored in the case's dtype:
- bytes_eager: every op reads each tensor input and writes each output once (views move nothing; an
  expanded operand counts its stored elements).
- bytes_min: ops are fused into groups and only group inputs and outputs touch memory. A convolution or
  matmul starts a group; any other op (elementwise, reduction, pooling, copy) joins the group that produced
  its newest input, which keeps the groups acyclic; each group reads each tensor it did not produce once and
  writes a tensor once when another group or the caller reads it. So the network input and the parameters
  are read once, the output written once, and a gate's input x makes a round trip: x is written, reduced,
  and read again to be scaled.
The *_attention columns apply the same rules to the ops inside the attention modules alone, their inputs
coming from memory and their outputs going back to it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from attnbench.backbones import BuiltModel, Site, build_model, native_params
from attnbench.config import AttentionEntry, CaseSpec
from attnbench.measure.base import MeasureContext, MetricResult, metric
from attnbench.measure.flops import RULES, Fusion, OpCall
from attnbench.measure.prepared import DTYPES, PreparedCase
from attnbench.modules import BASELINE, NATIVE, get_attention

SiteFormula = Callable[[Site], int]
"""The analytic parameter count of the instance at a site."""


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class Access:
    """One tensor an op reads or writes: its storage, the exact view, and the bytes it holds."""

    storage: int
    view: tuple[Any, ...]
    nbytes: int


@dataclass(frozen=True)
class OpRecord:
    op: str
    fusion: Fusion | None
    """None for an op no rule counts: it stays outside every fused group."""
    macs: int
    flops: int
    reads: tuple[Access, ...]
    writes: tuple[Access, ...]
    attention: bool


class OpCounter(FlopCounterMode):
    """FlopCounterMode that hands every executed op to the rule table and records its memory accesses."""

    def __init__(self, attention_scopes: set[str]):
        super().__init__(display=False)
        self.attention_scopes = attention_scopes
        self.records: list[OpRecord] = []
        self.uncounted: Counter[str] = Counter()
        self._alive: list[Any] = []  # storages stay alive, so their addresses name them uniquely

    def access(self, tensor: torch.Tensor) -> Access:
        storage = tensor.untyped_storage()._cdata
        stored = math.prod(size for size, stride in zip(tensor.shape, tensor.stride()) if stride != 0)
        view = (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        return Access(storage, view, stored * tensor.element_size())

    def _count_flops(self, func_packet: Any, out: Any, args: tuple, kwargs: dict) -> Any:
        name = str(func_packet)
        call = OpCall(args, kwargs, out)
        self._alive.append((args, kwargs, out))
        attention = not self.attention_scopes.isdisjoint(self.mod_tracker.parents)
        reads = tuple(self.access(t) for t in call.inputs)
        if name not in RULES:
            self.uncounted[name] += 1
            writes = tuple(self.access(t) for t in call.outputs)
            self.records.append(OpRecord(name, None, 0, 0, reads, writes, attention))
            return out
        rule = RULES.get(name)
        writes = tuple(self.access(t) for t in rule.written(call))
        self.records.append(
            OpRecord(name, rule.fusion, rule.macs(call), rule.flops(call), reads, writes, attention)
        )
        return out


def eager_bytes(records: Iterable[OpRecord]) -> int:
    return sum(
        access.nbytes
        for record in records
        if record.fusion not in (None, Fusion.ALIAS)
        for access in (*record.reads, *record.writes)
    )


@dataclass
class _Version:
    """The contents of a storage as one group left them."""

    group: int
    counted: bool
    nbytes: int
    joinable: bool
    """Whether a consumer may fuse into the group through this tensor (not after a reduction)."""
    stored: bool = False


def min_bytes(records: list[OpRecord], selected: Callable[[OpRecord], bool], outputs: set[int]) -> int:
    """Traffic of the selected ops under the fused-group model (module docstring); the other ops are the
    outside world: what they read from the selected groups must be written, what they write is read."""
    groups = itertools.count()
    current: dict[int, _Version] = {}
    versions: list[_Version] = []
    group_reads: set[tuple[int, tuple[Any, ...]]] = set()
    traffic = 0
    for record in records:
        if record.fusion is Fusion.ALIAS:
            continue
        if record.fusion is None or not selected(record):
            for access in record.reads:
                if access.storage in current:
                    current[access.storage].stored = True
            group = next(groups)
            for access in record.writes:
                current[access.storage] = _Version(group, False, access.nbytes, joinable=False)
            continue
        producers = [current[a.storage] for a in record.reads if a.storage in current]
        newest = max((version.group for version in producers), default=None)
        fuse = record.fusion in (Fusion.FUSIBLE, Fusion.REDUCTION) and all(
            version.counted and version.joinable for version in producers if version.group == newest
        )
        group = newest if fuse and newest is not None else next(groups)
        joinable = record.fusion is not Fusion.REDUCTION
        for access in record.reads:
            version = current.get(access.storage)
            if version is not None and version.group == group:
                continue  # produced inside this group: never leaves the chip
            if version is not None:
                version.stored = True
            if (group, access.view) not in group_reads:
                group_reads.add((group, access.view))
                traffic += access.nbytes
        for access in record.writes:
            version = current.get(access.storage)
            if version is not None and version.group == group:
                version.nbytes = max(version.nbytes, access.nbytes)
                version.joinable = joinable
            else:
                current[access.storage] = _Version(group, True, access.nbytes, joinable)
                versions.append(current[access.storage])
    for storage in outputs:
        if storage in current:
            current[storage].stored = True
    return traffic + sum(version.nbytes for version in versions if version.stored)


def tally(records: list[OpRecord], outputs: set[int]) -> dict[str, int]:
    """The counted columns of the whole model and of its attention modules alone."""
    columns: dict[str, int] = {}
    selections: dict[str, Callable[[OpRecord], bool]] = {
        "": lambda record: True,
        "_attention": lambda record: record.attention,
    }
    for suffix, selected in selections.items():
        chosen = [record for record in records if record.fusion is not None and selected(record)]
        columns[f"macs{suffix}"] = sum(record.macs for record in chosen)
        columns[f"flops{suffix}"] = sum(record.flops for record in chosen)
        columns[f"bytes_eager{suffix}"] = eager_bytes(chosen)
        columns[f"bytes_min{suffix}"] = min_bytes(records, selected, outputs)
    return columns


@dataclass(frozen=True)
class Complexity:
    """Counts at batch 1 and 2; everything counted is affine in the batch size."""

    at_one: dict[str, int]
    at_two: dict[str, int]
    uncounted: Counter[str] = field(default_factory=Counter)

    def at_batch(self, batch_size: int) -> dict[str, int]:
        return {
            name: one + (batch_size - 1) * (self.at_two[name] - one) for name, one in self.at_one.items()
        }


def attention_scopes(model: nn.Module, sites: list[Site]) -> set[str]:
    """ModuleTracker's names of the attention modules: the root's class name, then the module path."""
    for site in sites:
        if model.get_submodule(site.path) is not site.module:
            raise ValueError(f"site {site.path!r} does not name its attention module in the model")
    return {f"{type(model).__name__}.{site.path}" for site in sites}


def _count_pass(
    model: nn.Module, scopes: set[str], shape: tuple[int, ...], precision: Precision,
    mode: contextlib.AbstractContextManager,
) -> tuple[dict[str, int], Counter[str]]:
    device = _first_tensor(model).device
    with torch.no_grad(), mode:
        inputs = torch.randn(shape, device=device, dtype=precision.input_dtype)
        with precision.autocast(device), OpCounter(scopes) as counter:
            output = model(inputs)
        outputs = {counter.access(t).storage for t in tree_leaves(output) if isinstance(t, torch.Tensor)}
    return tally(counter.records, outputs), counter.uncounted


REAL_COUNT_MAX_PIXELS = 256 * 256
"""Up to this image size the counting forwards run on real tensors: 3-5x faster than fake ones (measured:
resnet50 at 64 px 0.15 s against 0.42 s), and the activations the counter keeps alive at batch 2 stay
within a few hundred MB. Larger images are counted on fake tensors, which hold no memory."""


def _first_tensor(model: nn.Module) -> torch.Tensor:
    """A parameter or buffer of the model, which says its device and dtype (an empty CPU tensor without one)."""
    return next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0))


def counts_on_real_tensors(model: nn.Module, image_shape: tuple[int, ...], precision: Precision) -> bool:
    """Whether a real forward is cheap here: a small image, and kernels for the dtype on the model's device
    (the CPU has few float16 ones)."""
    first = _first_tensor(model)
    on_cpu = first.device.type == "cpu"
    float16 = torch.float16 in (precision.dtype, first.dtype)
    return math.prod(image_shape[1:]) <= REAL_COUNT_MAX_PIXELS and not (on_cpu and float16)


@dataclass(frozen=True)
class Precision:
    """How a forward runs in reduced precision: under autocast (casts inside the forward, float32 weights
    read and cast on every call) or on a model and input converted to the dtype."""

    dtype: torch.dtype = torch.float32
    autocasts: bool = False

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.float32 if self.autocasts else self.dtype

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.autocasts or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def count_complexity(
    model: nn.Module, sites: list[Site], image_shape: tuple[int, ...], precision: Precision = Precision(),
    fake: bool | None = None,
) -> Complexity:
    """Counts inference forwards of `model` (in eval mode, as it runs: its own dtype, under autocast when
    `precision` says so) on batches of one and two `image_shape` inputs; every tensor is counted at the
    size of its elements. The counts do not depend on the values: `fake` (default: counts_on_real_tensors
    decides) runs the forwards on fake tensors, which allocate nothing; both passes then share one fake-tensor
    mode, so the parameters are converted once.
    """
    was_training = model.training
    model.eval()
    scopes = attention_scopes(model, sites)
    if fake is None:
        fake = not counts_on_real_tensors(model, image_shape, precision)
    mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    try:
        at_one, uncounted = _count_pass(model, scopes, (1, *image_shape), precision, mode)
        at_two, _ = _count_pass(model, scopes, (2, *image_shape), precision, mode)
    finally:
        model.train(was_training)
    return Complexity(at_one, at_two, uncounted)


def format_counter(counts: Counter[str]) -> str:
    """`op:count;op:count`, sorted by op; empty when nothing is listed."""
    return ";".join(f"{op}:{n}" for op, n in sorted(counts.items()))


def site_formula(entry: AttentionEntry) -> SiteFormula:
    """The registry formula at the site's channels; for `native`, torchvision's SE formula at the site's
    channels and squeeze width."""
    if entry.key == NATIVE:
        return native_params
    spec, options = get_attention(entry.key), entry.options_dict
    return lambda site: spec.param_count(site.channels, **options)


def site_rows(case: CaseSpec, built: BuiltModel, formula: SiteFormula) -> list[dict[str, Any]]:
    """One row per attention instance: its analytic parameter count against its counted parameters.

    An instance shared by several sites (one per stage, say) is one row: its parameters exist once.
    """
    rows: dict[int, dict[str, Any]] = {}
    for site in built.sites:
        if id(site.module) in rows:
            rows[id(site.module)]["sites"] += 1
            continue
        expected = formula(site)
        counted = count_params(site.module)
        rows[id(site.module)] = {
            "case_id": case.case_id,
            "backbone": case.backbone,
            "attention": case.attention.label,
            "path": site.path,
            "stage": site.stage,
            "channels": site.channels,
            "sites": 1,
            "formula_params": expected,
            "counted_params": counted,
            "ok": expected == counted,
        }
    return list(rows.values())


def baseline_params(backbone: str, context: MeasureContext) -> int:
    key = f"params:{backbone}"
    if key not in context.cache:
        with torch.device("meta"):  # shapes are all a count needs
            context.cache[key] = count_params(build_model(backbone).model)
    return context.cache[key]


COUNTED = "eval forward"
"""What the complexity columns count, whatever the case times (a train step, a compiled step): one
inference forward of the eager model."""


@metric("complexity")
def complexity(prepared: PreparedCase, context: MeasureContext) -> MetricResult:
    case, built = prepared.case, prepared.built
    precision = Precision(DTYPES[case.dtype], context.timing.low_precision == "autocast")
    key = ("complexity", case.backbone, case.attention, case.placement, case.resolution, precision)
    if key not in context.cache:
        image = (3, case.resolution, case.resolution)
        context.cache[key] = count_complexity(built.model, built.sites, image, precision)
    counts: Complexity = context.cache[key]
    columns: dict[str, Any] = counts.at_batch(case.batch_size)
    baseline = case.attention.key == BASELINE
    sites = [] if baseline else site_rows(case, built, site_formula(case.attention))
    params = count_params(built.model)
    columns.update(
        params=params,
        params_attention=params - baseline_params(case.backbone, context),
        arithmetic_intensity=columns["flops"] / columns["bytes_eager"],
        uncounted_ops=format_counter(counts.uncounted),
        formula_ok=None if baseline else all(row["ok"] for row in sites),
        counted=COUNTED,
    )
    return MetricResult(columns, sites=sites)
