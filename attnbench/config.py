"""attnbench.toml and suite files -> validated frozen dataclasses, with one-line errors naming file and key."""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
import tomllib
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatchcase
from itertools import product
from pathlib import Path
from typing import Any

from attnbench.errors import AttnbenchError, ConfigError, OptionError, UnknownNameError
from attnbench.registry import unknown_name_message

CONFIG_FILENAME = "attnbench.toml"
METRIC_NAMES = ("complexity", "latency", "memory", "profile", "module_latency")
MODES = ("eval", "train")
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
L2_FLUSH = ("auto", "on", "off")


@dataclass(frozen=True)
class TimingSpec:
    """How long and how often each case is timed."""

    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 1000
    max_seconds: float = 1.0
    max_case_seconds: float | None = 600.0
    """A case still running after this many seconds is stopped and recorded with status timeout."""
    cudnn_benchmark: bool = True
    l2_flush: str = "auto"
    """CUDA: write a buffer larger than the L2 cache before each repeat; auto = when the working set fits in L2."""
    isolate: bool | None = None
    """Each case in a fresh subprocess; None = on for CUDA, off for the CPU."""
    compile_backend: str = "inductor"
    """torch.compile backend for cases with compile = true."""
    rounds: int = 4
    """Cases that differ only in their attention entry are timed in this many interleaved rounds, so that
    drift of the machine (frequency, neighbours) lands on the module and its baseline alike; 1 = one
    case after the other. Applies where cases run in one process (not isolated)."""

    def isolate_on(self, device_type: str) -> bool:
        return self.isolate if self.isolate is not None else device_type == "cuda"


@dataclass(frozen=True)
class GateThresholds:
    """When a slower case counts as a regression: both a relative slowdown and a significance level."""

    max_slowdown: float = 0.05
    """Largest accepted increase of the median, as a fraction (0.05 = 5%)."""
    alpha: float = 0.01
    """Significance level of the Mann-Whitney U test; the bootstrap interval of the ratio is 1 - alpha."""


@dataclass(frozen=True)
class GateOverride:
    """Thresholds for the cases of one suite and/or whose case path matches an fnmatch pattern."""

    max_slowdown: float | None = None
    alpha: float | None = None
    suite: str | None = None
    pattern: str | None = None

    def applies(self, suite: str, case_path: str) -> bool:
        return (self.suite is None or self.suite == suite) and (
            self.pattern is None or fnmatchcase(case_path, self.pattern)
        )


@dataclass(frozen=True)
class GateConfig:
    """The [gate] table: defaults, then suite overrides, then case-pattern overrides (later ones win)."""

    defaults: GateThresholds = GateThresholds()
    overrides: tuple[GateOverride, ...] = ()

    def thresholds_for(self, suite: str, case_path: str) -> GateThresholds:
        thresholds = self.defaults
        # Suite-wide overrides first, so that a pattern is always more specific than its suite.
        ordered = sorted(self.overrides, key=lambda override: override.pattern is not None)
        for override in ordered:
            if override.applies(suite, case_path):
                thresholds = GateThresholds(
                    max_slowdown=thresholds.max_slowdown if override.max_slowdown is None else override.max_slowdown,
                    alpha=thresholds.alpha if override.alpha is None else override.alpha,
                )
        return thresholds


@dataclass(frozen=True)
class ProjectConfig:
    """Project defaults from attnbench.toml; `root` is the folder that holds it."""

    root: Path
    results_dir: Path
    suites_dir: Path
    device: str = "auto"
    threads: int | None = None
    timing: TimingSpec = TimingSpec()
    gate: GateConfig = GateConfig()
    plugins: tuple[str, ...] = ()
    source: Path | None = None


@dataclass(frozen=True)
class AttentionEntry:
    """One attention column of a grid: a registry key with options and the label results carry."""

    key: str
    label: str
    options: tuple[tuple[str, Any], ...] = ()
    placement: str | None = None
    backbones: tuple[str, ...] = ()
    """Only these backbones of the grid (empty: all of them), for modules whose reference configuration
    exists in some backbones only (SK in ResNeXt, ECA's per-backbone released kernels)."""

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
    compile: tuple[bool, ...] = (False,)

    @property
    def case_count(self) -> int:
        pairs = sum(entry.applies_to(backbone) for backbone in self.backbones for entry in self.attention)
        return (
            pairs * len(self.batch_sizes) * len(self.resolutions)
            * len(self.dtypes) * len(self.modes) * len(self.channels_last) * len(self.compile)
        )


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    metrics: tuple[str, ...]
    grid: GridSpec
    timing: TimingSpec
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

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
    compile: bool = False

    @property
    def key(self) -> dict[str, Any]:
        """The columns that identify a case across runs."""
        return {
            "backbone": self.backbone,
            "attention": self.attention.label,
            "batch_size": self.batch_size,
            "resolution": self.resolution,
            "dtype": self.dtype,
            "mode": self.mode,
            "device": self.device,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }

    @property
    def case_id(self) -> str:
        canonical = json.dumps(
            {**self.key, "options": self.attention.options, "placement": self.attention.placement},
            sort_keys=True,
        )
        return hashlib.sha1(canonical.encode()).hexdigest()[:12]


# --- reading TOML ---------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: malformed TOML: {error}") from None


class _Section:
    """Typed access to one table of a TOML file; every error names the file and the key."""

    def __init__(self, data: Any, source: Path | str, prefix: str, allowed: tuple[str, ...]):
        where = f"{source}: [{prefix}]" if prefix else f"{source}:"
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table")
        self.data, self.source, self.prefix = data, source, prefix
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{self.where(key)}: unknown key; "
                    + unknown_name_message("key", key, list(allowed)).split(": ", 1)[1]
                )

    def bools(self, key: str) -> tuple[bool, ...]:
        """A list of distinct booleans, defaulting to [false]: a grid axis that can be switched on."""
        values = self.list_of(key, bool, (False,))
        if len(set(values)) != len(values):
            raise ConfigError(f"{self.where(key)}: values must be distinct, got {list(values)}")
        return values

    def where(self, key: str) -> str:
        dotted = f"{self.prefix}.{key}" if self.prefix else key
        return f"{self.source}: {dotted}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default
        value = self.data[key]
        return self.check(key, value, kind)

    def check(self, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {value!r}")
        return value

    def positive_int(self, key: str, default: Any = ..., minimum: int = 1) -> int:
        value = self.get(key, int, default)
        if value is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: must be >= {minimum}, got {value}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise ConfigError(
                f"{self.where(key)}: {value!r} is not accepted; accepted: {', '.join(choices)}"
            )
        return value

    def list_of(self, key: str, kind: type, default: Any = ...) -> tuple[Any, ...]:
        values = self.get(key, list, default)
        if isinstance(values, tuple):
            return values
        if not values:
            raise ConfigError(f"{self.where(key)}: must not be empty")
        return tuple(self.check(key, value, kind) for value in values)


def _timing(data: Any, source: Path | str, prefix: str, base: TimingSpec) -> TimingSpec:
    section = _Section(data, source, prefix, tuple(TimingSpec.__dataclass_fields__))
    timing = TimingSpec(
        warmup=section.positive_int("warmup", base.warmup, minimum=0),
        min_repeats=section.positive_int("min_repeats", base.min_repeats),
        max_repeats=section.positive_int("max_repeats", base.max_repeats),
        max_seconds=section.get("max_seconds", float, base.max_seconds),
        max_case_seconds=section.get("max_case_seconds", float, base.max_case_seconds),
        cudnn_benchmark=section.get("cudnn_benchmark", bool, base.cudnn_benchmark),
        l2_flush=_l2_flush(section, base.l2_flush),
        isolate=section.get("isolate", bool, base.isolate),
        compile_backend=_compile_backend(section, base.compile_backend),
        rounds=section.positive_int("rounds", base.rounds),
    )
    if timing.max_repeats < timing.min_repeats:
        raise ConfigError(
            f"{source}: [{prefix}] max_repeats ({timing.max_repeats}) must be >= "
            f"min_repeats ({timing.min_repeats})"
        )
    for key in ("max_seconds", "max_case_seconds"):
        value = getattr(timing, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: {prefix}.{key}: must be > 0, got {value}")
    return timing


def _l2_flush(section: _Section, default: str) -> str:
    """`auto`, or a boolean forcing the flush on or off."""
    value = section.get("l2_flush", (bool, str), default)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in L2_FLUSH:
        raise ConfigError(
            f"{section.where('l2_flush')}: {value!r} is not accepted; accepted: auto, true, false"
        )
    return value


def _compile_backend(section: _Section, default: str) -> str:
    value = section.get("compile_backend", str, default)
    if value == default:
        return value
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if value not in backends:
        raise ConfigError(
            f"{section.where('compile_backend')}: "
            + unknown_name_message("compile backend", value, list(backends))
        )
    return value


def parse_fraction(value: str | float, where: str) -> float:
    """A relative slowdown written as "5%" or 0.05; a bare number of 1 or more is refused as ambiguous."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a fraction; accepted: a percentage like 5% or 0.05") from None
    if not 0 < fraction < float("inf") or (not text.endswith("%") and fraction >= 1):
        raise ConfigError(f"{where}: {value!r} is out of range; accepted: a percentage > 0% like 5%, or 0 < x < 1")
    return fraction


def parse_alpha(value: str | float, where: str) -> float:
    try:
        alpha = float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a number; accepted: 0 < alpha < 1, e.g. 0.01") from None
    if not 0 < alpha < 1:
        raise ConfigError(f"{where}: {value!r} is out of range; accepted: 0 < alpha < 1, e.g. 0.01")
    return alpha


def _thresholds(section: _Section) -> dict[str, float]:
    """The max_slowdown and alpha a [gate] table or override sets, validated."""
    found = {}
    if "max_slowdown" in section.data:
        found["max_slowdown"] = parse_fraction(
            section.get("max_slowdown", (str, float)), section.where("max_slowdown")
        )
    if "alpha" in section.data:
        found["alpha"] = parse_alpha(section.get("alpha", float), section.where("alpha"))
    return found


def _gate(data: Any, source: Path) -> GateConfig:
    section = _Section(data, source, "gate", ("max_slowdown", "alpha", "suites", "cases"))
    defaults = GateThresholds(**_thresholds(section))
    overrides: list[GateOverride] = []
    for suite, table in section.get("suites", dict, {}).items():
        overrides.append(GateOverride(suite=suite, **_thresholds(
            _Section(table, source, f"gate.suites.{suite}", ("max_slowdown", "alpha"))
        )))
    cases = section.get("cases", list, [])
    for index, table in enumerate(cases):
        case = _Section(table, source, f"gate.cases[{index}]", ("pattern", "suite", "max_slowdown", "alpha"))
        overrides.append(GateOverride(
            pattern=case.get("pattern", str), suite=case.get("suite", str, None), **_thresholds(case)
        ))
    return GateConfig(defaults, tuple(overrides))


def import_plugins(plugins: tuple[str, ...], root: Path, where: str) -> None:
    """Imports user modules that register their own attention modules or backbones.

    The project root goes on sys.path so that a plugin can sit next to attnbench.toml.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for name in plugins:
        try:
            importlib.import_module(name)
        except Exception as error:  # a plugin's own bug is the user's to fix: one line, not a traceback
            raise ConfigError(f"{where}: cannot import plugin {name!r}: {type(error).__name__}: {error}") from None


# --- project configuration ------------------------------------------------------------------------


def find_config(start: Path | None = None) -> Path | None:
    """attnbench.toml in `start` (default: the current directory) or the nearest parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    return None


def load_project(path: Path | None = None) -> ProjectConfig:
    """The given config file, else the nearest attnbench.toml, else built-in defaults in the cwd."""
    if path is None:
        path = find_config()
    if path is None:
        root = Path.cwd()
        return ProjectConfig(root=root, results_dir=root / "results", suites_dir=root / "suites")
    path = Path(path)
    data = read_toml(path)
    section = _Section(
        data, path, "", ("results_dir", "suites_dir", "device", "threads", "timing", "gate", "plugins")
    )
    root = path.resolve().parent
    threads = section.get("threads", int, None)
    if threads is not None and threads < 1:
        raise ConfigError(f"{path}: threads: must be >= 1, got {threads}")
    plugins = section.list_of("plugins", str, ())
    # Before any suite is parsed: suites may name the modules that plugins register.
    import_plugins(plugins, root, section.where("plugins"))
    return ProjectConfig(
        root=root,
        results_dir=root / section.get("results_dir", str, "results"),
        suites_dir=root / section.get("suites_dir", str, "suites"),
        device=section.choice("device", DEVICES, "auto"),
        threads=threads,
        timing=_timing(data.get("timing", {}), path, "timing", TimingSpec()),
        gate=_gate(data.get("gate", {}), path),
        plugins=plugins,
        source=path,
    )


# --- suites ---------------------------------------------------------------------------------------


def resolve_suite_path(name_or_path: str, project: ProjectConfig) -> Path:
    """A path to a suite file, or a suite name looked up in the project's suites folder."""
    as_path = Path(name_or_path)
    if as_path.suffix == ".toml" or as_path.exists() or "/" in name_or_path:
        if not as_path.is_file():
            raise ConfigError(f"suite file {name_or_path!r} not found")
        return as_path
    candidate = project.suites_dir / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise UnknownNameError(unknown_name_message("suite", name_or_path, list_suites(project)))
    return candidate


def list_suites(project: ProjectConfig) -> list[str]:
    if not project.suites_dir.is_dir():
        return []
    return sorted(path.stem for path in project.suites_dir.glob("*.toml"))


def load_suite(name_or_path: str, project: ProjectConfig) -> SuiteSpec:
    path = resolve_suite_path(name_or_path, project)
    return parse_suite(read_toml(path), path, project)


def parse_suite(data: dict[str, Any], source: Path | str, project: ProjectConfig) -> SuiteSpec:
    top = _Section(data, source, "", ("name", "description", "metrics", "grid", "timing"))
    metrics = top.list_of("metrics", str, ("complexity", "latency"))
    for metric in metrics:
        if metric not in METRIC_NAMES:
            raise ConfigError(
                f"{top.where('metrics')}: " + unknown_name_message("metric", metric, list(METRIC_NAMES))
            )
    grid = _grid(top.get("grid", dict), source, project)
    timing = _timing(data.get("timing", {}), source, "timing", project.timing)
    name = top.get("name", str, Path(source).stem)
    suite = SuiteSpec(
        name=name,
        description=top.get("description", str, ""),
        metrics=metrics,
        grid=grid,
        timing=timing,
        source=Path(source) if isinstance(source, (str, Path)) else None,
    )
    return replace(suite, raw=suite_to_dict(suite))


def _grid(data: dict[str, Any], source: Path | str, project: ProjectConfig) -> GridSpec:
    from attnbench.backbones import BACKBONES

    section = _Section(data, source, "grid", tuple(GridSpec.__dataclass_fields__))
    backbones = section.list_of("backbones", str)
    for name in backbones:
        if name not in BACKBONES:
            raise ConfigError(
                f"{section.where('backbones')}: "
                + unknown_name_message("backbone", name, BACKBONES.names())
            )
    entries = _attention_entries(section.get("attention", list), section)
    batch_sizes = section.list_of("batch_sizes", int)
    resolutions = section.list_of("resolutions", int)
    for key, values in (("batch_sizes", batch_sizes), ("resolutions", resolutions)):
        bad = [value for value in values if value < 1]
        if bad:
            raise ConfigError(f"{section.where(key)}: values must be >= 1, got {bad[0]}")
    for name in backbones:
        minimum = BACKBONES.get(name).min_resolution
        small = [r for r in resolutions if r < minimum]
        if small:
            raise ConfigError(
                f"{section.where('resolutions')}: {small[0]} is too small for {name}; "
                f"accepted: >= {minimum}"
            )
    dtypes = section.list_of("dtypes", str, ("float32",))
    modes = section.list_of("modes", str, ("eval",))
    for key, values, accepted in (("dtypes", dtypes, DTYPES), ("modes", modes, MODES)):
        for value in values:
            if value not in accepted:
                raise ConfigError(
                    f"{section.where(key)}: {value!r} is not accepted; accepted: {', '.join(accepted)}"
                )
    device = section.choice("device", DEVICES, project.device)
    check_dtypes_on_device(dtypes, device, section.where("dtypes"))
    entries = _runnable_entries(backbones, entries, min(resolutions), section)
    return GridSpec(
        backbones=backbones,
        attention=tuple(entry for entry, _ in entries),
        batch_sizes=batch_sizes,
        resolutions=resolutions,
        dtypes=dtypes,
        modes=modes,
        device=device,
        channels_last=section.bools("channels_last"),
        compile=section.bools("compile"),
    )


def _runnable_entries(
    backbones: tuple[str, ...],
    entries: tuple[tuple[AttentionEntry, bool], ...],
    resolution: int,
    section: _Section,
) -> tuple[tuple[AttentionEntry, bool], ...]:
    """Every (backbone, attention) pair must be buildable at the grid's smallest resolution.

    A module named in the suite that cannot is a one-line error with the reason; one that only came in
    through `"*"` is kept for the backbones it runs in (its `backbones` narrowed to them) and left out
    where it runs in none, so `"*"` means every registered module, wherever it can run. `native` without
    a `backbones` list is narrowed the same way, to the grid backbones that ship attention of their own,
    and is an error only where none does.
    """
    from attnbench.backbones import check_pair
    from attnbench.modules import BASELINE, NATIVE

    kept = []
    for entry, starred in entries:
        outside = [b for b in entry.backbones if b not in backbones]
        if outside:
            raise ConfigError(
                f"{section.where('attention')}: {entry.label} names backbone {outside[0]!r}, which is not in "
                f"the grid; accepted: {', '.join(backbones)}"
            )
        narrows = starred or (entry.key == NATIVE and not entry.backbones)
        fitting, refusals = [], []
        for backbone in filter(entry.applies_to, backbones):
            try:
                if entry.key != BASELINE:
                    check_pair(backbone, entry.key, entry.options_dict, entry.placement, resolution)
            except AttnbenchError as error:
                if not narrows:
                    raise ConfigError(f"{section.where('attention')}: {error}") from None
                refusals.append(error)
                continue
            fitting.append(backbone)
        if not fitting:
            if not starred:
                raise ConfigError(f"{section.where('attention')}: {refusals[0]}")
            continue
        if narrows and len(fitting) < len(backbones):
            entry = replace(entry, backbones=tuple(fitting))
        kept.append((entry, starred))
    if not kept:
        raise ConfigError(f"{section.where('attention')}: no module of '*' runs in {', '.join(backbones)}")
    return tuple(kept)


CPU_DTYPES = ("float32", "bfloat16")


def check_dtypes_on_device(dtypes: tuple[str, ...], device: str, where: str) -> None:
    """float16 autocast has no CPU kernels. An explicit CPU device refuses it here; with `auto` resolving
    to the CPU at run time, those cases are recorded as skipped instead."""
    if device == "cpu":
        unsupported = [d for d in dtypes if d not in CPU_DTYPES]
        if unsupported:
            raise ConfigError(
                f"{where}: {unsupported[0]} is not supported on device cpu; accepted: {', '.join(CPU_DTYPES)}"
            )


def default_label(key: str, options: dict[str, Any], defaults: dict[str, Any]) -> str:
    """The key, plus the options that differ from the module's defaults: `se(bias=True)`."""
    changed = {name: value for name, value in sorted(options.items()) if defaults.get(name) != value}
    if not changed:
        return key
    return f"{key}({','.join(f'{name}={value!r}' for name, value in changed.items())})"


def attention_entry(
    key: str, options: dict[str, Any] | None = None, label: str | None = None, placement: str | None = None
) -> AttentionEntry:
    """A validated attention entry: known key, known options, known placement."""
    from attnbench.backbones import check_placement
    from attnbench.modules import BASELINE, NATIVE, get_attention

    options = options or {}
    if key in (BASELINE, NATIVE):
        if options or placement:
            role = "the baseline" if key == BASELINE else "the backbone's own attention, as built"
            raise ConfigError(f"attention {key!r} ({role}) takes no options or placement")
        return AttentionEntry(key, label or key)
    spec = get_attention(key)
    spec.resolve_options(options)
    if placement is not None:
        check_placement(spec, placement)
    return AttentionEntry(
        key=key,
        label=label or default_label(key, options, spec.defaults),
        options=tuple(sorted(options.items())),
        placement=placement,
    )


def parse_option(text: str) -> tuple[str, Any]:
    """`reduction=8` -> ("reduction", 8) for command lines: the value is read as TOML, as in suite files,
    and a value that is not TOML (`mode=fast`) is a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise OptionError(f"option {text!r} is not of the form KEY=VALUE, e.g. reduction=8 or bias=true")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return name.strip(), value


def _attention_entries(values: list[Any], grid: _Section) -> tuple[tuple[AttentionEntry, bool], ...]:
    """The grid's attention entries, each with whether it came in through `"*"`."""
    from attnbench.modules import ATTENTION

    where = grid.where("attention")
    if not values:
        raise ConfigError(f"{where}: must not be empty")
    entries: list[AttentionEntry] = []
    named = {value for value in values if isinstance(value, str)}
    starred: set[str] = set()
    for value in values:
        try:
            if value == "*":
                starred.update(key for key in ATTENTION.names() if key not in named)
                entries.extend(attention_entry(key) for key in ATTENTION.names() if key not in named)
            elif isinstance(value, str):
                entries.append(attention_entry(value))
            elif isinstance(value, dict):
                options = dict(value)
                key = options.pop("name", None)
                if not isinstance(key, str):
                    raise ConfigError("an inline attention table needs a string 'name'")
                label = options.pop("label", None)
                placement = options.pop("placement", None)
                only = options.pop("backbones", [])
                if label is not None and not isinstance(label, str):
                    raise ConfigError(f"label must be a string, got {label!r}")
                if not isinstance(only, list) or not all(isinstance(b, str) for b in only):
                    raise ConfigError(f"backbones must be a list of backbone names, got {only!r}")
                entry = attention_entry(key, options, label, placement)
                entries.append(replace(entry, backbones=tuple(only)))
            else:
                raise ConfigError(
                    f"expected a registry key or an inline table {{ name = ... }}, got {value!r}"
                )
        except AttnbenchError as error:
            raise ConfigError(f"{where}: {error}") from None
    labels = [entry.label for entry in entries]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"{where}: label {duplicates[0]!r} appears twice; give one a `label`")
    return tuple((entry, entry.label in starred) for entry in entries)


def suite_to_dict(suite: SuiteSpec) -> dict[str, Any]:
    """The resolved suite as plain data in suite-file form: stored in meta.json, parsed back on resume."""
    grid = asdict(suite.grid)
    grid["attention"] = [_entry_to_table(entry) for entry in suite.grid.attention]
    data = {
        "name": suite.name,
        "description": suite.description,
        "metrics": suite.metrics,
        "grid": grid,
        # None means "the default" (e.g. isolate: by device); a suite file says that by leaving the key out
        "timing": {key: value for key, value in asdict(suite.timing).items() if value is not None},
    }
    return json.loads(json.dumps(data))  # tuples become lists, exactly as meta.json will hold them


def _entry_to_table(entry: AttentionEntry) -> dict[str, Any]:
    table: dict[str, Any] = {"name": entry.key, "label": entry.label, **dict(entry.options)}
    if entry.placement:
        table["placement"] = entry.placement
    if entry.backbones:
        table["backbones"] = list(entry.backbones)
    return table


def filter_suite(
    suite: SuiteSpec,
    backbones: list[str] | None = None,
    attention: list[str] | None = None,
    device: str | None = None,
) -> SuiteSpec:
    """The suite narrowed to some backbones or attention keys/labels, or moved to another device."""
    grid = suite.grid
    if attention:
        names = {e.label for e in grid.attention} | {e.key for e in grid.attention}
        unknown = [a for a in attention if a not in names]
        if unknown:
            raise ConfigError(
                f"--attention {unknown[0]!r} is not in suite {suite.name!r}; "
                f"accepted: {', '.join(e.label for e in grid.attention)}"
            )
        labels = {e.label for e in grid.attention}
        # A name that is some entry's label picks that entry only; otherwise it picks every entry of that key.
        grid = replace(
            grid,
            attention=tuple(
                e for e in grid.attention
                if e.label in attention or (e.key in attention and e.key not in labels)
            ),
        )
    if backbones:
        unknown = [b for b in backbones if b not in grid.backbones]
        if unknown:
            raise ConfigError(
                f"--backbone {unknown[0]!r} is not in suite {suite.name!r}; "
                f"accepted: {', '.join(grid.backbones)}"
            )
        kept = tuple(b for b in grid.backbones if b in backbones)
        for name in attention or ():
            picked = [e for e in grid.attention if name in (e.label, e.key)]
            if not any(e.applies_to_any(kept) for e in picked):
                raise ConfigError(
                    f"--attention {name!r} runs in none of --backbone {', '.join(kept)}; "
                    f"it runs in: {', '.join(picked[0].backbones)}"
                )
        # An entry narrowed to some backbones keeps those still in the grid, so that the narrowed suite,
        # stored in meta.json, parses again on --resume; one left with none goes.
        entries = tuple(
            replace(e, backbones=tuple(b for b in e.backbones if b in kept)) if e.backbones else e
            for e in grid.attention
            if e.applies_to_any(kept)
        )
        if not entries:
            raise ConfigError(f"no attention entry of suite {suite.name!r} runs in --backbone {', '.join(kept)}")
        grid = replace(grid, backbones=kept, attention=entries)
    if device:
        if device not in DEVICES:
            raise ConfigError(f"--device {device!r} is not accepted; accepted: {', '.join(DEVICES)}")
        check_dtypes_on_device(grid.dtypes, device, f"--device {device}")
        grid = replace(grid, device=device)
    narrowed = replace(suite, grid=grid)
    return replace(narrowed, raw=suite_to_dict(narrowed))


def expand_grid(suite: SuiteSpec, device: str) -> list[CaseSpec]:
    """Every case of the suite, backbone-major so that each model is built once per attention entry."""
    grid = suite.grid
    return [
        CaseSpec(backbone, entry, batch, resolution, dtype, mode, device, channels_last, compiled)
        for backbone, entry, batch, resolution, dtype, mode, channels_last, compiled in product(
            grid.backbones, grid.attention, grid.batch_sizes, grid.resolutions, grid.dtypes, grid.modes,
            grid.channels_last, grid.compile,
        )
        if entry.applies_to(backbone)
    ]
