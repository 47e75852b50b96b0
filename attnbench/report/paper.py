"""The "Paper reproduction" report section: published parameter totals against the measured ones.

Each published total is matched to the run's case of the same backbone and attention label (the label
that `attention_entry` derives from the key and options), and compared at the published precision: a
count reproduces when it rounds to the printed value in the printed unit.
"""

from __future__ import annotations

import pandas as pd

from attnbench.config import attention_entry
from attnbench.report.format import frame_table
from attnbench.report.markdown import SECTIONS
from attnbench.report.published import PUBLISHED, PublishedCount
from attnbench.report.view import RunView

CONVENTIONS = (
    "Published precision and units: `Mi` is the 1024-based million of ECA-Net's tables "
    "(25,557,032 / 2^20 = 24.37). torchvision ResNets put the stride on the 3x3 conv; this moves FLOPs, "
    "not parameters. The SE rows use the Caffe release's configuration, with FC biases (`bias=True`); "
    "ECA rows use the released per-stage kernels. BatchNorm running statistics and FcaNet's DCT filters "
    "are buffers, not parameters. torchvision's totals are exact (M with six decimals); `native` is "
    "torchvision's model with the squeeze-excitation it ships."
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


def reproduction_table(cases: pd.DataFrame) -> tuple[pd.DataFrame, list[PublishedCount]]:
    """One row per published total the run measured, and the entries of the rows that do not reproduce."""
    ok = cases[cases["status"] == "ok"].drop_duplicates(["backbone", "attention"]).set_index(["backbone", "attention"])
    rows, misses = [], []
    for entry in PUBLISHED:
        label = attention_entry(entry.attention, dict(entry.options)).label
        if (entry.backbone, label) not in ok.index:
            continue
        row = comparison(entry, ok.loc[(entry.backbone, label), "params"])
        rows.append(row)
        if row["reproduces"] == "no":
            misses.append(entry)
    return pd.DataFrame(rows), misses


@SECTIONS.register("Paper reproduction")
def paper_reproduction(run: RunView) -> str | None:
    if "params" not in run.cases or run.cases["params"].isna().all():
        return None
    table, misses = reproduction_table(run.cases)
    if table.empty:
        return None
    lines = [frame_table(table), "", CONVENTIONS]
    if misses:
        lines += ["", "Totals that do not reproduce:"]
        lines += [f"- {entry.model} ({entry.source}): {entry.note}" for entry in misses]
    return "\n".join(lines)
