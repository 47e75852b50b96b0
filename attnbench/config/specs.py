"""Frozen specs of what a suite asks for: timing settings, attention entries, the grid and its cases."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.results.schema import SETTING, case_id, format_options

MODES = ("eval", "train")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
L2_FLUSH = ("auto", "on", "off")
LOW_PRECISION = ("autocast", "convert")
CPU_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class TimingSpec:
    """How long and how often each case is timed."""

    warmup: int = 3
    warmup_seconds: float = 0.25
    """Warm-up ends early, after its first call, once it has taken this long: on the CPU a step's first call
    already runs at its steady speed, so the further warm-up calls of a slow step only cost time."""
    min_repeats: int = 10
    max_repeats: int = 1000
    max_seconds: float = 1.0
    max_case_seconds: float | None = 600.0
    """A case still running after this many seconds is stopped and recorded with status timeout."""
    cudnn_benchmark: bool = True
    l2_flush: str = "auto"
    """CUDA: write a buffer larger than the L2 cache before each repeat; auto = when the working set fits in L2."""
    isolate: bool | None = None
    """Each comparison group in a fresh subprocess; None = on for CUDA, off for the CPU."""
    compile_backend: str = "inductor"
    """torch.compile backend of the inductor runtime's cases."""
    tf32: bool | None = None
    """CUDA float32 matmuls and convolutions in TF32 (torch.backends.cuda.matmul / cudnn .allow_tf32);
    None leaves PyTorch's defaults (TF32 convolutions, full-FP32 matmuls on Ampere and later)."""
    low_precision: str = "autocast"
    """How float16/bfloat16 cases run: `autocast` (weights stay float32 and are cast per call, as mixed-
    precision training and many inference scripts run) or `convert` (model and input converted to the
    dtype once, as deployment runs them)."""
    cuda_graphs: bool = False
    """CUDA: also capture each case's step in a CUDA graph and time its replay (graph_ms_median), so that
    eager latency minus replay shows the launch and dispatch overhead."""
    interleave: bool = True
    """Cases that differ only in their attention entry (a comparison group) are timed together, in rounds
    of randomized order, so that drift of the machine lands on a module and its `none` alike and each
    overhead comes from the pairs; false = one case after the other."""
    calls_per_turn: int = 1
    """Timed calls of a case in each of its turns (1: the finest alternation, call by call)."""
    turn_warmup: int = 0
    """Untimed calls at the start of each turn, after the other cases' calls evicted this one's data."""
    precision: float | None = None
    """Target 95% interval half-width of each overhead over `none`, in percentage points (of the median
    itself for a group without `none`): timing stops once every case of the group meets it, or at the cap
    of max_seconds per case. None: time each group until the cap."""

    def isolate_on(self, device_type: str) -> bool:
        return self.isolate if self.isolate is not None else device_type == "cuda"

    def group_seconds(self, cases: int) -> float | None:
        """The time limit of a group of `cases` timed together: each case's limit, summed."""
        return None if self.max_case_seconds is None else self.max_case_seconds * cases


@dataclass(frozen=True)
class AttentionEntry:
    """One attention column of a grid: a registry key with options and the label results carry."""

    key: str
    label: str
    options: tuple[tuple[str, Any], ...] = ()
    """The options the suite gave (they make the default label)."""
    placement: str | None = None
    """The placement the suite asked for; None = the module's own (resolved per backbone in CaseSpec)."""
    backbones: tuple[str, ...] = ()
    """Only these backbones of the grid (empty: all of them), for modules whose reference configuration
    exists in some backbones only (SK in ResNeXt, ECA's per-backbone released kernels)."""
    resolved: tuple[tuple[str, Any], ...] = ()
    """Every option after the module's defaults are applied: part of the case key."""

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    def applies_to(self, backbone: str) -> bool:
        return not self.backbones or backbone in self.backbones

    def applies_to_any(self, backbones: tuple[str, ...]) -> bool:
        return any(map(self.applies_to, backbones))


@dataclass(frozen=True)
class GridSpec:
    backbones: tuple[str, ...]
    attention: tuple[AttentionEntry, ...]
    batch_sizes: tuple[int, ...]
    resolutions: tuple[int, ...]
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("eval",)
    device: str = "auto"
    channels_last: tuple[bool, ...] = (False,)
    runtimes: tuple[str, ...] = ("eager",)
    """What runs each model (attnbench.runtimes): eager PyTorch, inductor, onnxruntime, openvino, tensorrt."""

    @property
    def case_count(self) -> int:
        pairs = sum(entry.applies_to(backbone) for backbone in self.backbones for entry in self.attention)
        return (
            pairs * len(self.batch_sizes) * len(self.resolutions)
            * len(self.dtypes) * len(self.modes) * len(self.channels_last) * len(self.runtimes)
        )


@dataclass(frozen=True)
class LeftOut:
    """A module that `"*"` brought into a grid and that cannot run in one of its backbones, and why."""

    attention: str
    backbone: str
    reason: str


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    metrics: tuple[str, ...]
    grid: GridSpec
    timing: TimingSpec
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    left_out: tuple[LeftOut, ...] = ()
    """What `"*"` left out of the grid (recorded in meta.json, shown by the run and its report)."""

    @property
    def fingerprint(self) -> str:
        """A hash of the resolved suite content, to tell whether a suite changed between runs."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CaseSpec:
    """One point of the grid: everything that defines what is measured."""

    backbone: str
    attention: AttentionEntry
    batch_size: int
    resolution: int
    dtype: str
    mode: str
    device: str
    channels_last: bool = False
    runtime: str = "eager"
    placement: str = ""
    """The placement the module sits at in this backbone ("" for `none`), as suites.make_case resolves it."""

    @property
    def key(self) -> dict[str, Any]:
        """The case key (results.schema.CASE_KEY): what identifies this case across runs."""
        entry = self.attention
        key = {
            "backbone": self.backbone,
            "attention": entry.label,
            "attention_key": entry.key,
            "options": format_options(entry.resolved),
            "placement": self.placement,
            "batch_size": self.batch_size,
            "resolution": self.resolution,
            "dtype": self.dtype,
            "mode": self.mode,
            "device": self.device,
            "channels_last": self.channels_last,
            "runtime": self.runtime,
        }
        return key

    @property
    def case_id(self) -> str:
        return case_id(self.key)

    @property
    def setting(self) -> tuple[Any, ...]:
        """The comparison group this case belongs to (results.schema.SETTING)."""
        key = self.key
        return tuple(key[column] for column in SETTING)

    @property
    def requested_placement(self) -> str | None:
        """What build_model is asked for: the resolved placement, or the module's own where none was resolved."""
        return self.placement or self.attention.placement
