"""Suite files -> validated SuiteSpecs, command-line narrowing, and the grid's cases."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, replace
from itertools import product
from pathlib import Path
from typing import Any

from attnbench.config.project import ProjectConfig, parse_timing
from attnbench.config.specs import (
    CPU_DTYPES, DEVICES, DTYPES, MODES, AttentionEntry, CaseSpec, GridSpec, LeftOut, SuiteSpec,
)
from attnbench.config.toml import Section, read_toml
from attnbench.errors import AttnbenchError, ConfigError, OptionError, UnknownNameError
from attnbench.registry import did_you_mean, unknown_name_message


def metric_names() -> list[str]:
    """`latency` (a step of the schedule: a group's cases are timed together) and the registered metrics."""
    from attnbench.measure import METRICS

    return ["latency", *METRICS.names()]


BUILT_IN_SUITES = Path(__file__).resolve().parent.parent / "suites"
"""The suites that come with attnbench (package data), found wherever it is installed and run."""


def suite_files(project: ProjectConfig) -> dict[str, Path]:
    """Every suite by name: the built-in ones and the project's suites folder, whose file wins a name both
    have (a project can adapt smoke.toml without renaming it)."""
    files: dict[str, Path] = {}
    for folder in (BUILT_IN_SUITES, project.suites_dir):
        if folder.is_dir():
            files.update({path.stem: path for path in folder.glob("*.toml")})
    return dict(sorted(files.items()))


def resolve_suite_path(name_or_path: str, project: ProjectConfig) -> Path:
    """A path to a suite file, or a suite name: the project's suites folder first, then the built-in suites."""
    as_path = Path(name_or_path)
    if as_path.suffix == ".toml" or as_path.exists() or "/" in name_or_path:
        if as_path.is_dir():
            raise ConfigError(f"suite file {name_or_path!r} is a folder; accepted: a suite name or a .toml file")
        if not as_path.is_file():
            raise ConfigError(f"suite file {name_or_path!r} not found")
        return as_path
    files = suite_files(project)
    if name_or_path not in files:
        raise UnknownNameError(unknown_name_message("suite", name_or_path, list(files)))
    return files[name_or_path]


def list_suites(project: ProjectConfig) -> list[str]:
    return list(suite_files(project))


def load_suite(name_or_path: str, project: ProjectConfig) -> SuiteSpec:
    path = resolve_suite_path(name_or_path, project)
    return parse_suite(read_toml(path), path, project)


def parse_suite(data: dict[str, Any], source: Path | str, project: ProjectConfig) -> SuiteSpec:
    top = Section(data, source, "", ("name", "description", "metrics", "grid", "timing"))
    metrics = top.list_of("metrics", str, ("complexity", "latency"))
    accepted = metric_names()
    for metric in metrics:
        if metric not in accepted:
            raise ConfigError(f"{top.where('metrics')}: " + unknown_name_message("metric", metric, accepted))
    grid, left_out = _grid(top.get("grid", dict), source, project)
    suite = SuiteSpec(
        name=top.get("name", str, Path(source).stem),
        description=top.get("description", str, ""),
        metrics=metrics,
        grid=grid,
        timing=parse_timing(data.get("timing", {}), source, "timing", project.timing),
        source=Path(source) if isinstance(source, (str, Path)) else None,
        left_out=left_out,
    )
    return replace(suite, raw=suite_to_dict(suite))


def _grid(data: dict[str, Any], source: Path | str, project: ProjectConfig) -> tuple[GridSpec, tuple[LeftOut, ...]]:
    from attnbench.backbones import BACKBONES, runnable_entries
    from attnbench.runtimes.axis import parse_runtimes

    # `compile`: the older form of `runtimes`
    section = Section(data, source, "grid", (*GridSpec.__dataclass_fields__, "compile"))
    backbones = section.distinct("backbones", section.list_of("backbones", str))
    for name in backbones:
        if name not in BACKBONES:
            raise ConfigError(
                f"{section.where('backbones')}: " + unknown_name_message("backbone", name, BACKBONES.names())
            )
    entries = _attention_entries(section.get("attention", list), section)
    batch_sizes = section.distinct("batch_sizes", section.list_of("batch_sizes", int))
    resolutions = section.distinct("resolutions", section.list_of("resolutions", int))
    for key, values in (("batch_sizes", batch_sizes), ("resolutions", resolutions)):
        bad = [value for value in values if value < 1]
        if bad:
            raise ConfigError(f"{section.where(key)}: values must be >= 1, got {bad[0]}")
    for name in backbones:
        minimum = BACKBONES.get(name).min_resolution
        small = [r for r in resolutions if r < minimum]
        if small:
            raise ConfigError(f"{section.where('resolutions')}: {small[0]} is too small for {name}; accepted: >= {minimum}")
    dtypes = section.distinct("dtypes", section.list_of("dtypes", str, ("float32",)))
    modes = section.distinct("modes", section.list_of("modes", str, ("eval",)))
    for key, values, accepted in (("dtypes", dtypes, DTYPES), ("modes", modes, MODES)):
        for value in values:
            if value not in accepted:
                raise ConfigError(f"{section.where(key)}: {value!r} is not accepted; accepted: {', '.join(accepted)}")
    device = section.choice("device", DEVICES, project.device)
    check_dtypes_on_device(dtypes, device, section.where("dtypes"))
    try:
        runnable, left_out = runnable_entries(backbones, entries, min(resolutions))
    except AttnbenchError as error:
        raise ConfigError(f"{section.where('attention')}: {error}") from None
    grid = GridSpec(
        backbones=backbones,
        attention=runnable,
        batch_sizes=batch_sizes,
        resolutions=resolutions,
        dtypes=dtypes,
        modes=modes,
        device=device,
        channels_last=section.bools("channels_last"),
        runtimes=parse_runtimes(section, device),
    )
    return grid, tuple(LeftOut(*item) for item in left_out)


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
    resolved = spec.resolve_options(options)
    options = {name: resolved[name] for name in options}  # as checked: an int given for a float is a float
    if placement is not None:
        check_placement(spec, placement)
    return AttentionEntry(
        key=key,
        label=label or default_label(key, options, spec.defaults),
        options=tuple(sorted(options.items())),
        placement=placement,
        resolved=tuple(sorted(resolved.items())),
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


def _entry_from_table(value: dict[str, Any]) -> AttentionEntry:
    from attnbench.modules import BASELINE

    options = dict(value)
    key = options.pop("name", None)
    if not isinstance(key, str):
        raise ConfigError("an inline attention table needs a string 'name'")
    label = options.pop("label", None)
    placement = options.pop("placement", None)
    only = options.pop("backbones", [])
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"label must be a string, got {label!r}")
    if not isinstance(only, list) or not all(isinstance(b, str) for b in only) or "backbones" in value and not only:
        raise ConfigError(f"backbones must be a non-empty list of backbone names (leave it out for all), got {only!r}")
    if label == BASELINE and key != BASELINE:
        raise ConfigError(f"label 'none' names the plain backbone, which every overhead is taken over; give {key!r} another")
    return replace(attention_entry(key, options, label, placement), backbones=tuple(only))


def _attention_entries(values: list[Any], grid: Section) -> tuple[tuple[AttentionEntry, bool], ...]:
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
                keys = [key for key in ATTENTION.names() if key not in named]
                starred.update(keys)
                entries.extend(attention_entry(key) for key in keys)
            elif isinstance(value, str):
                entries.append(attention_entry(value))
            elif isinstance(value, dict):
                entries.append(_entry_from_table(value))
            else:
                raise ConfigError(f"expected a registry key or an inline table {{ name = ... }}, got {value!r}")
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


def _not_in_suite(option: str, name: str, suite: SuiteSpec, accepted: Sequence[str]) -> ConfigError:
    return ConfigError(
        f"{option} {name!r} is not in suite {suite.name!r}; {did_you_mean(name, list(accepted))}"
        f"accepted: {', '.join(accepted)}"
    )


def _narrow_backbones(
    suite: SuiteSpec, grid: GridSpec, backbones: list[str], attention: list[str] | None
) -> GridSpec:
    """The grid narrowed to `backbones`, each entry kept where it still runs."""
    unknown = [b for b in backbones if b not in grid.backbones]
    if unknown:
        raise _not_in_suite("--backbone", unknown[0], suite, grid.backbones)
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
    return replace(grid, backbones=kept, attention=entries)


def filter_suite(
    suite: SuiteSpec,
    backbones: list[str] | None = None,
    attention: list[str] | None = None,
    device: str | None = None,
    runtimes: list[str] | None = None,
) -> SuiteSpec:
    """The suite narrowed to some backbones, attention keys/labels or runtimes, or moved to another device."""
    grid = suite.grid
    if runtimes:
        unknown = [r for r in runtimes if r not in grid.runtimes]
        if unknown:
            raise _not_in_suite("--runtime", unknown[0], suite, grid.runtimes)
        grid = replace(grid, runtimes=tuple(r for r in grid.runtimes if r in runtimes))
    if attention:
        names = {e.label for e in grid.attention} | {e.key for e in grid.attention}
        unknown = [a for a in attention if a not in names]
        left_out = [item for item in suite.left_out if unknown and item.attention == unknown[0]]
        if left_out:
            raise ConfigError(f'--attention {unknown[0]!r}: left out of "*": {left_out[0].reason}')
        if unknown:
            raise _not_in_suite("--attention", unknown[0], suite, [e.label for e in grid.attention])
        # A key picks every entry of that module (`se`: `se` and `se-bias`), a label that entry alone.
        grid = replace(grid, attention=tuple(e for e in grid.attention if e.label in attention or e.key in attention))
    if backbones:
        grid = _narrow_backbones(suite, grid, backbones, attention)
    if device:
        if device not in DEVICES:
            raise ConfigError(f"--device {device!r} is not accepted; accepted: {', '.join(DEVICES)}")
        check_dtypes_on_device(grid.dtypes, device, f"--device {device}")
        grid = replace(grid, device=device)
    left_out = tuple(item for item in suite.left_out
                     if item.backbone in grid.backbones and (not attention or item.attention in attention))
    narrowed = replace(suite, grid=grid, left_out=left_out)
    return replace(narrowed, raw=suite_to_dict(narrowed))


def entry_placement(backbone: str, entry: AttentionEntry) -> str:
    """The placement `entry` takes in `backbone` ("" for `none`): the module's default may differ per family."""
    from attnbench.backbones import NATIVE_PLACEMENT, resolve_placement
    from attnbench.modules import BASELINE, NATIVE, get_attention

    if entry.key in (BASELINE, NATIVE):
        return "" if entry.key == BASELINE else NATIVE_PLACEMENT
    return resolve_placement(backbone, get_attention(entry.key), entry.placement)


def make_case(backbone: str, entry: AttentionEntry, **point: Any) -> CaseSpec:
    """A case with its placement resolved for the backbone."""
    return CaseSpec(backbone, entry, placement=entry_placement(backbone, entry), **point)


def expand_grid(suite: SuiteSpec, device: str) -> list[CaseSpec]:
    """Every case of the suite, backbone-major so that each model is built once per attention entry."""
    grid = suite.grid
    return [
        make_case(
            backbone, entry, batch_size=batch, resolution=resolution, dtype=dtype, mode=mode, device=device,
            channels_last=channels_last, runtime=runtime,
        )
        for backbone, entry, batch, resolution, dtype, mode, channels_last, runtime in product(
            grid.backbones, grid.attention, grid.batch_sizes, grid.resolutions, grid.dtypes, grid.modes,
            grid.channels_last, grid.runtimes,
        )
        if entry.applies_to(backbone)
    ]
