"""attnbench.toml: project defaults, the [timing] table every suite starts from, gate thresholds, plugins."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from attnbench.config.specs import DEVICES, L2_FLUSH, LOW_PRECISION, TimingSpec
from attnbench.config.toml import Section, read_toml
from attnbench.errors import ConfigError
from attnbench.registry import unknown_name_message

CONFIG_FILENAME = "attnbench.toml"


def available_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity, which a container or `taskset` narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def auto_threads() -> int:
    """`threads = "auto"`: one core fewer than this process may use, at least one. With a thread on every
    core, any other process (a shell, an editor, a CI agent) stalls one of them and the others wait for it
    at the next barrier; the spare core takes those interruptions (measured in the README's "Timing
    methodology")."""
    return max(1, len(available_cores()) - 1)


def parse_threads(value: Any, where: str) -> int:
    """A thread count from a config file or the command line: an integer >= 1 or "auto"."""
    if value == "auto":
        return auto_threads()
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer >= 1 or \"auto\", got {value!r}")
    if not 1 <= value <= MAX_THREADS:
        raise ConfigError(f"{where}: must be between 1 and {MAX_THREADS}, got {value}")
    return value


MAX_THREADS = 1024
"""More threads than any machine attnbench runs on has cores; torch's thread pool crashes the process
(a segfault, not an error) when asked for 100,000. Not the usable cores: a SLURM task's node may have
more than the login node that parses the option."""


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
class SlurmConfig:
    """The [executor.slurm] table: what each task of `run --executor slurm` (one comparison group per task of
    a job array, submitted through submitit) asks SLURM for."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int | None = None
    """None: 1 for a CUDA suite, 0 for a CPU one."""
    cpus_per_task: int | None = None
    """Also the task's torch threads; None: attnbench.toml's `threads`."""
    mem_gb: float | None = None
    timeout_min: int = 60
    array_parallelism: int | None = None
    """At most this many tasks of the array run at once (SLURM's `%` limit)."""
    setup: tuple[str, ...] = ()
    """Shell lines each task runs first (modules, a virtual environment)."""
    folder: Path | None = None
    """Where submitit keeps its pickles and logs (a shared file system); None: `.submitit/` in the results root."""


SLURM_KEYS = tuple(SlurmConfig.__dataclass_fields__)


def _slurm(data: Any, source: Path, root: Path) -> SlurmConfig:
    executor = Section(data, source, "executor", ("slurm",))
    section = Section(executor.get("slurm", dict, {}), source, "executor.slurm", SLURM_KEYS)
    setup = section.get("setup", list, [])
    folder = section.get("folder", str, None)
    mem_gb = section.get("mem_gb", float, None)
    if mem_gb is not None and mem_gb <= 0:
        raise ConfigError(f"{section.where('mem_gb')}: must be > 0, got {mem_gb}")
    return SlurmConfig(
        partition=section.get("partition", str, None),
        account=section.get("account", str, None),
        qos=section.get("qos", str, None),
        constraint=section.get("constraint", str, None),
        gpus_per_task=section.positive_int("gpus_per_task", None, minimum=0),
        cpus_per_task=section.positive_int("cpus_per_task", None),
        mem_gb=mem_gb,
        timeout_min=section.positive_int("timeout_min", 60),
        array_parallelism=section.positive_int("array_parallelism", None),
        setup=tuple(section.check("setup", line, str) for line in setup),
        folder=root / folder if folder else None,
    )


@dataclass(frozen=True)
class ProjectConfig:
    """Project defaults from attnbench.toml; `root` is the folder that holds it."""

    root: Path
    results_dir: Path
    suites_dir: Path
    device: str = "auto"
    threads: int | None = None
    """torch threads of every process that times; None leaves torch's default (attnbench.toml's default is
    "auto", resolved by auto_threads)."""
    timing: TimingSpec = TimingSpec()
    gate: GateConfig = GateConfig()
    plugins: tuple[str, ...] = ()
    source: Path | None = None
    accuracy_csv: Path | None = None
    """The lab's own ImageNet results (attnbench.accuracy reads them), relative paths from the toml's folder."""
    slurm: SlurmConfig = SlurmConfig()


def parse_timing(data: Any, source: Path | str, prefix: str, base: TimingSpec) -> TimingSpec:
    """A [timing] table over `base` (the project's defaults for a suite, the built-in ones for the project)."""
    section = Section(data, source, prefix, (*TimingSpec.__dataclass_fields__, "rounds"))
    timing = TimingSpec(
        warmup=section.positive_int("warmup", base.warmup, minimum=0),
        warmup_seconds=section.get("warmup_seconds", float, base.warmup_seconds),
        min_repeats=section.positive_int("min_repeats", base.min_repeats),
        max_repeats=section.positive_int("max_repeats", base.max_repeats),
        max_seconds=section.get("max_seconds", float, base.max_seconds),
        max_case_seconds=section.get("max_case_seconds", float, base.max_case_seconds),
        cudnn_benchmark=section.get("cudnn_benchmark", bool, base.cudnn_benchmark),
        l2_flush=_l2_flush(section, base.l2_flush),
        isolate=section.get("isolate", bool, base.isolate),
        compile_backend=_compile_backend(section, base.compile_backend),
        tf32=section.get("tf32", bool, base.tf32),
        low_precision=section.choice("low_precision", LOW_PRECISION, base.low_precision),
        cuda_graphs=section.get("cuda_graphs", bool, base.cuda_graphs),
        interleave=_interleave(section, base.interleave),
        calls_per_turn=section.positive_int("calls_per_turn", base.calls_per_turn),
        turn_warmup=section.positive_int("turn_warmup", base.turn_warmup, minimum=0),
        precision=section.get("precision", float, base.precision),
    )
    if timing.max_repeats < timing.min_repeats:
        raise ConfigError(
            f"{source}: [{prefix}] max_repeats ({timing.max_repeats}) must be >= "
            f"min_repeats ({timing.min_repeats})"
        )
    for key in ("max_seconds", "max_case_seconds", "precision"):
        value = getattr(timing, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: {prefix}.{key}: must be > 0, got {value}")
    if timing.warmup_seconds < 0:
        raise ConfigError(f"{source}: {prefix}.warmup_seconds: must be >= 0, got {timing.warmup_seconds}")
    if timing.max_case_seconds is not None and timing.max_case_seconds <= timing.max_seconds:
        # A case times for max_seconds after its warm-up, so within this limit it could never finish.
        raise ConfigError(
            f"{source}: {prefix}.max_case_seconds ({timing.max_case_seconds:g}) must be > max_seconds "
            f"({timing.max_seconds:g}), the time each case is timed for; otherwise every case times out"
        )
    return timing


def _interleave(section: Section, default: bool) -> bool:
    """`interleave`, or the older `rounds` (a count of interleaved rounds: 1 meant one case after the
    other), which suites and stored runs written before paired timing still carry."""
    if "rounds" in section.data:
        if "interleave" in section.data:
            raise ConfigError(f"{section.where('rounds')}: give `interleave` only (`rounds` is its older form)")
        return section.positive_int("rounds") > 1
    return section.get("interleave", bool, default)


def _l2_flush(section: Section, default: str) -> str:
    """`auto`, or a boolean forcing the flush on or off."""
    value = section.get("l2_flush", (bool, str), default)
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in L2_FLUSH:
        raise ConfigError(
            f"{section.where('l2_flush')}: {value!r} is not accepted; accepted: \"auto\", or true/false unquoted"
        )
    return value


def _compile_backend(section: Section, default: str) -> str:
    value = section.get("compile_backend", str, default)
    if value == default:
        return value
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if value not in backends:
        raise ConfigError(
            f"{section.where('compile_backend')}: " + unknown_name_message("compile backend", value, list(backends))
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


def _thresholds(section: Section) -> dict[str, float]:
    """The max_slowdown and alpha a [gate] table or override sets, validated."""
    found = {}
    if "max_slowdown" in section.data:
        found["max_slowdown"] = parse_fraction(section.get("max_slowdown", (str, float)), section.where("max_slowdown"))
    if "alpha" in section.data:
        found["alpha"] = parse_alpha(section.get("alpha", float), section.where("alpha"))
    return found


def _gate(data: Any, source: Path) -> GateConfig:
    section = Section(data, source, "gate", ("max_slowdown", "alpha", "suites", "cases"))
    defaults = GateThresholds(**_thresholds(section))
    overrides: list[GateOverride] = []
    for suite, table in section.get("suites", dict, {}).items():
        overrides.append(GateOverride(suite=suite, **_thresholds(
            Section(table, source, f"gate.suites.{suite}", ("max_slowdown", "alpha"))
        )))
    for index, table in enumerate(section.get("cases", list, [])):
        case = Section(table, source, f"gate.cases[{index}]", ("pattern", "suite", "max_slowdown", "alpha"))
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
        return ProjectConfig(root=root, results_dir=root / "results", suites_dir=root / "suites", threads=auto_threads())
    path = Path(path)
    data = read_toml(path)
    section = Section(
        data, path, "",
        ("results_dir", "suites_dir", "device", "threads", "timing", "gate", "plugins", "accuracy_csv", "executor"),
    )
    root = path.resolve().parent
    threads = parse_threads(section.data.get("threads", "auto"), section.where("threads"))
    plugins = section.list_of("plugins", str, (), may_be_empty=True)  # [] reads as "no plugins"
    accuracy_csv = section.get("accuracy_csv", str, None)
    # Before any suite is parsed: suites may name the modules that plugins register.
    import_plugins(plugins, root, section.where("plugins"))
    return ProjectConfig(
        root=root,
        results_dir=root / section.get("results_dir", str, "results"),
        suites_dir=root / section.get("suites_dir", str, "suites"),
        device=section.choice("device", DEVICES, "auto"),
        threads=threads,
        timing=parse_timing(data.get("timing", {}), path, "timing", TimingSpec()),
        gate=_gate(data.get("gate", {}), path),
        plugins=plugins,
        source=path,
        accuracy_csv=root / accuracy_csv if accuracy_csv else None,
        slurm=_slurm(data.get("executor", {}), path, root),
    )
