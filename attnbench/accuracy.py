"""Published ImageNet-1k top-1 of module + backbone pairs, each against its source's own baseline.

attnbench measures what a module costs; what it buys is published, in papers and official READMEs, each
under its own training recipe. The shipped table (attnbench/data/published_accuracy.csv) holds only numbers a
source prints, with the baseline from the same source and table, so that a gain is never taken across two
recipes by attnbench. A lab adds its own results with `accuracy_csv` in attnbench.toml: the same columns,
its rows first.

Join rule: a measured case takes the rows of the same backbone and the same configuration (attention key,
options that differ from the module's defaults, placement), else the rows of the same backbone and key,
marked as approximate. Among those, the lab's rows come first, then the shipped table in file order (each
module's own authors before third-party reproductions).
"""

from __future__ import annotations

import ast
import csv
import io
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from attnbench.config import ProjectConfig, attention_entry, default_label
from attnbench.errors import AttnbenchError, ConfigError
from attnbench.registry import close_matches, unknown_name_message

PUBLISHED_CSV = "published_accuracy.csv"

COLUMNS = {
    "backbone": "an attnbench backbone key (resnet50, mobilenet_v2, ...)",
    "attention": "an attnbench attention key, or none for the plain backbone",
    "options": "module options that differ from the defaults, KEY=VALUE separated by ';' (bias=true)",
    "placement": "the insertion policy, empty for the module's default",
    "model": "the model's name as the source prints it",
    "top1_pct": "ImageNet-1k top-1 accuracy in %",
    "baseline_model": "the baseline's name as the same source prints it",
    "baseline_top1_pct": "the baseline's top-1 accuracy in %, from the same source and table",
    "epochs": "training epochs of the model, empty where the source does not state them",
    "baseline_epochs": "training epochs of the baseline, empty where not stated",
    "resolution_px": "evaluation crop in pixels, empty where not stated",
    "source": "a short name of the source (SKNet, timm, our lab, ...)",
    "where": "where in the source: a table, a file",
    "url": "the address of the source",
    "note": "anything a reader must know to weigh the number",
}
"""The columns of the table and of a lab's CSV, with what each holds."""
REQUIRED = ("backbone", "attention", "model", "top1_pct", "baseline_model", "baseline_top1_pct", "source")

BACKBONE_SHORT = {
    "resnet18": "R18", "resnet34": "R34", "resnet50": "R50", "resnet101": "R101",
    "resnext50_32x4d": "X50", "mobilenet_v2": "MNv2",
}
"""Backbone abbreviations for narrow listings; other backbones keep their key."""


@dataclass(frozen=True)
class AccuracyRow:
    """One published (or lab) top-1 of a module in a backbone, with the same source's baseline."""

    backbone: str
    attention: str
    options: tuple[tuple[str, Any], ...]
    placement: str | None
    model: str
    top1_pct: float
    baseline_model: str
    baseline_top1_pct: float
    source: str
    label: str
    """The attention label attnbench gives this configuration: key plus the options that differ from defaults."""
    decimals: int
    """The printed precision of the two top-1 numbers, which the gain keeps."""
    epochs: int | None = None
    baseline_epochs: int | None = None
    resolution_px: int | None = None
    where: str = ""
    url: str = ""
    note: str = ""
    lab: bool = False

    @property
    def gain_pp(self) -> float:
        return round(self.top1_pct - self.baseline_top1_pct, self.decimals)

    @property
    def configuration(self) -> str:
        return describe(self.label, self.placement)

    def gain_text(self) -> str:
        """The gain in percentage points at the printed precision, with its sign: +1.11, -0.370."""
        return f"{self.gain_pp:+.{self.decimals}f}"


def describe(label: str, placement: str | None) -> str:
    return f"{label} @{placement}" if placement else label


# ---------------------------------------------------------------- reading


def _value(text: str) -> Any:
    """An option value as suite files write it (true, 8, "resnet50") or as cases.csv records it (True, 'resnet50');
    anything else is a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(text: str) -> dict[str, Any]:
    """`bias=true;reduction=8` -> {"bias": True, "reduction": 8}; empty text is no options."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, raw = item.partition("=")
        if not sep or not name.strip() or not raw.strip():
            raise ValueError(f"{item!r} is not KEY=VALUE; accepted: e.g. bias=true;reduction=8")
        options[name.strip()] = _value(raw.strip())
    return options


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


class _Line:
    """One CSV record; every error names the file, the line and the column."""

    def __init__(self, path: Path, number: int, record: dict[str, str | None]):
        self.path, self.number, self.record = path, number, record

    def error(self, column: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: line {self.number}, column {column}: {problem}")

    def text(self, column: str) -> str:
        return (self.record.get(column) or "").strip()

    def required(self, column: str) -> str:
        value = self.text(column)
        if not value:
            raise self.error(column, f"is empty; accepted: {COLUMNS[column]}")
        return value

    def percent(self, column: str) -> tuple[float, int]:
        text = self.required(column)
        try:
            value = float(text)
        except ValueError:
            raise self.error(column, f"{text!r} is not a number; accepted: {COLUMNS[column]}") from None
        if not 0 < value <= 100:
            raise self.error(column, f"{text} is out of range; accepted: a percentage in (0, 100]")
        return value, _decimals(text)

    def count(self, column: str) -> int | None:
        text = self.text(column)
        if not text:
            return None
        if not text.isdigit() or int(text) < 1:
            raise self.error(column, f"{text!r} is not a positive integer; accepted: {COLUMNS[column]}")
        return int(text)


def _row(line: _Line, lab: bool) -> AccuracyRow:
    from attnbench.backbones import BACKBONES
    from attnbench.modules import ATTENTION, BASELINE

    backbone = line.required("backbone")
    if backbone not in BACKBONES:
        raise line.error("backbone", unknown_name_message("backbone", backbone, BACKBONES.names()))
    key = line.required("attention")
    if key != BASELINE and key not in ATTENTION:
        raise line.error("attention", unknown_name_message("attention", key, [BASELINE, *ATTENTION.names()]))
    try:
        options = parse_options(line.text("options"))
    except ValueError as error:
        raise line.error("options", str(error)) from None
    placement = line.text("placement") or None
    try:
        entry = attention_entry(key, options)
    except AttnbenchError as error:
        raise line.error("options", str(error)) from None
    if placement:
        try:
            attention_entry(key, options, placement=placement)
        except AttnbenchError as error:
            raise line.error("placement", str(error)) from None
    if placement and key != BASELINE and placement == ATTENTION.get(key).placement:
        placement = None  # the module's own default, written out
    top1, top1_decimals = line.percent("top1_pct")
    baseline, baseline_decimals = line.percent("baseline_top1_pct")
    if key == BASELINE and top1 != baseline:
        raise line.error("top1_pct", f"a {BASELINE} row is the plain backbone, its own baseline; accepted: "
                                     f"top1_pct equal to baseline_top1_pct ({baseline})")
    url = line.text("url")
    if url and not url.startswith(("https://", "http://")):
        raise line.error("url", f"{url!r} is not an address; accepted: an http(s) URL, or empty")
    return AccuracyRow(
        backbone=backbone, attention=key, options=entry.options, placement=placement,
        model=line.required("model"), top1_pct=top1, baseline_model=line.required("baseline_model"),
        baseline_top1_pct=baseline, source=line.required("source"), label=entry.label,
        decimals=max(top1_decimals, baseline_decimals),
        epochs=line.count("epochs"), baseline_epochs=line.count("baseline_epochs"),
        resolution_px=line.count("resolution_px"), where=line.text("where"), url=url, note=line.text("note"),
        lab=lab,
    )


def parse_rows(text: str, path: Path, lab: bool) -> tuple[AccuracyRow, ...]:
    """The rows of one CSV, validated: required columns present, no unknown column, every value usable."""
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    accepted = f"accepted columns: {', '.join(COLUMNS)} (required: {', '.join(REQUIRED)})"
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        hint = close_matches(unknown[0], list(COLUMNS))
        guess = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{path}: line 1: unknown column {unknown[0]!r}{guess}; {accepted}")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ConfigError(f"{path}: line 1: missing column {missing[0]!r}; {accepted}")
    reader.fieldnames = header
    rows = []
    for record in reader:
        line = _Line(path, reader.line_num, record)
        if None in record:
            raise line.error(header[-1], f"{len(header) + len(record[None])} fields, the header has {len(header)}")
        rows.append(_row(line, lab))
    return tuple(rows)


def read_lab_rows(path: Path, where: str = "") -> tuple[AccuracyRow, ...]:
    """A lab's CSV of accuracies; `where` names the setting that pointed to it (attnbench.toml: accuracy_csv)."""
    prefix = f"{where}: " if where else ""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # spreadsheets often write a byte-order mark
    except FileNotFoundError:
        raise ConfigError(f"{prefix}{path} does not exist; accepted: a CSV file with the columns "
                          f"{', '.join(COLUMNS)} (required: {', '.join(REQUIRED)})") from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise ConfigError(f"{prefix}{path} is not a UTF-8 CSV file: {type(error).__name__}") from None
    return parse_rows(text, Path(path), lab=True)


@lru_cache(maxsize=1)
def published_rows() -> tuple[AccuracyRow, ...]:
    """The shipped table; a bad row here is a bug in attnbench, which tests/test_accuracy.py keeps out."""
    table = resources.files("attnbench") / "data" / PUBLISHED_CSV
    return parse_rows(table.read_text(encoding="utf-8"), Path("attnbench/data") / PUBLISHED_CSV, lab=False)


def accuracy_rows(project: ProjectConfig | None = None) -> tuple[AccuracyRow, ...]:
    """The lab's rows (from the project's accuracy_csv), then the shipped table."""
    lab: tuple[AccuracyRow, ...] = ()
    if project is not None and project.accuracy_csv is not None:
        lab = read_lab_rows(project.accuracy_csv, where=f"{project.source}: accuracy_csv")
    return lab + published_rows()


# ---------------------------------------------------------------- the join


def case_configuration(key: str, options: object, placement: object, label: str) -> str:
    """A measured case's configuration in the rows' terms; its recorded label when the key is not registered
    (a plugin the report did not import)."""
    from attnbench.modules import ATTENTION, BASELINE

    if key == BASELINE:
        return BASELINE
    if key not in ATTENTION:
        return label
    spec = ATTENTION.get(key)
    recorded = parse_options(options if isinstance(options, str) else "")
    where = placement if isinstance(placement, str) and placement and placement != spec.placement else None
    return describe(default_label(key, recorded, spec.defaults), where)


def matching(
    rows: tuple[AccuracyRow, ...], backbone: str, key: str, configuration: str
) -> tuple[list[AccuracyRow], bool]:
    """The rows for a measured case in the order of `rows` (the lab's first), and whether they are of its exact
    configuration; rows of the same key only when none is."""
    same_key = [row for row in rows if row.backbone == backbone and row.attention == key]
    exact = [row for row in same_key if row.configuration == configuration]
    return (exact, True) if exact else (same_key, False)


def short_backbone(backbone: str) -> str:
    return BACKBONE_SHORT.get(backbone, backbone)
