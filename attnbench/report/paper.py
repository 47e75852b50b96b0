"""The "Paper reproduction" report section: published parameter totals against the measured ones.

Each published total is matched to the run's case of the same backbone and attention label (the label
that `attention_entry` derives from the key and options), and compared at the published precision: a
count reproduces when it rounds to the printed value in the printed unit.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from attnbench.config import attention_entry
from attnbench.report.format import frame_table
from attnbench.report.markdown import SECTIONS
from attnbench.report.published import PUBLISHED, TORCHVISION, PublishedCount
from attnbench.report.view import RunView

CONVENTIONS: tuple[tuple[Callable[[PublishedCount], bool], str], ...] = (
    (lambda entry: entry.unit == "Mi",
     "`Mi` is the 1024-based million of ECA-Net's tables (25,557,032 / 2^20 = 24.37)."),
    (lambda entry: entry.backbone.startswith("resnet"),
     "torchvision ResNets put the stride on the 3x3 conv; this moves FLOPs, not parameters."),
    (lambda entry: entry.attention == "se",
     "The SE rows use the Caffe release's configuration, with FC biases (`bias=True`)."),
    (lambda entry: entry.attention == "eca", "ECA rows use the released per-stage kernels."),
    (lambda entry: True, "BatchNorm running statistics are buffers, not parameters."),
    (lambda entry: entry.attention == "fca", "FcaNet's DCT filters are buffers, not parameters."),
    (lambda entry: entry.source == TORCHVISION, "torchvision's totals are exact (M with six decimals)."),
    (lambda entry: entry.attention == "native",
     "`native` is torchvision's model with the squeeze-excitation it ships."),
)
"""How to read the published totals: each sentence shown when a row of the table needs it."""


def conventions(entries: list[PublishedCount]) -> str:
    return "Published precision and units: " + " ".join(
        sentence for applies, sentence in CONVENTIONS if any(applies(entry) for entry in entries)
    )


def comparison(entry: PublishedCount, params: int) -> dict[str, object]:
    measured = round(params / entry.scale, entry.decimals)
    difference = measured - float(entry.value)
    return {
        "model": entry.model,
        "backbone": entry.backbone,
        "attention": attention_entry(entry.attention, dict(entry.options)).label,
        "published": f"{entry.value} {entry.unit}",
        "measured": f"{measured:.{entry.decimals}f} {entry.unit}",
        "difference": f"{difference:+.{entry.decimals}f}",
        "params": int(params),
        "reproduces": "yes" if f"{measured:.{entry.decimals}f}" == entry.value else "no",
        "source": entry.source,
    }


def measured_entries(cases: pd.DataFrame) -> list[tuple[PublishedCount, int]]:
    """The published totals the run measured, each with the parameters its case counted."""
    ok = cases[cases["status"] == "ok"].drop_duplicates(["backbone", "attention"]).set_index(["backbone", "attention"])
    keys = [(entry, (entry.backbone, attention_entry(entry.attention, dict(entry.options)).label)) for entry in PUBLISHED]
    return [(entry, ok.loc[key, "params"]) for entry, key in keys if key in ok.index]


def reproduction_table(cases: pd.DataFrame) -> tuple[pd.DataFrame, list[PublishedCount]]:
    """One row per published total the run measured, and the entries of the rows that do not reproduce."""
    return _reproduction(measured_entries(cases))


def _reproduction(measured: list[tuple[PublishedCount, int]]) -> tuple[pd.DataFrame, list[PublishedCount]]:
    rows = [comparison(entry, params) for entry, params in measured]
    misses = [entry for (entry, _), row in zip(measured, rows) if row["reproduces"] == "no"]
    return pd.DataFrame(rows), misses


@SECTIONS.register("Paper reproduction")
def paper_reproduction(run: RunView) -> str | None:
    if "params" not in run.cases or run.cases["params"].isna().all():
        return None
    measured = measured_entries(run.cases)
    table, misses = _reproduction(measured)
    if table.empty:
        return None
    lines = [frame_table(table), "", conventions([entry for entry, _ in measured])]
    if misses:
        lines += ["", "Totals that do not reproduce:"]
        lines += [f"- {entry.model} ({entry.source}): {entry.note}" for entry in misses]
    return "\n".join(lines)
