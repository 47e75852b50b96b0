"""The formula verification section: each attention instance's analytic parameter count against the
parameters counted in the built model (attention_sites.csv), and SE's closed form over a whole network."""

from __future__ import annotations

import ast

import pandas as pd

from attnbench.backbones import NATIVE_FORMULA
from attnbench.modules import ATTENTION, NATIVE
from attnbench.report.markdown import SECTIONS, fmt_number, frame_table
from attnbench.results import Run

SE_KEY = "se"


def parse_options(cell: object) -> dict[str, object]:
    """cases.csv's `options` cell (`name=repr;name=repr`) back into a dict."""
    if not isinstance(cell, str) or not cell:
        return {}
    pairs = (item.split("=", 1) for item in cell.split(";"))
    return {name: ast.literal_eval(value) for name, value in pairs}


def instances(run: Run) -> pd.DataFrame:
    """The sites of one case per (backbone, attention label): batch and resolution do not change them."""
    keys = run.cases[["case_id", "attention_key", "options"]]
    sites = run.sites.merge(keys, on="case_id", how="left")
    first = sites.groupby(["backbone", "attention"], sort=False)["case_id"].transform("first")
    return sites[sites["case_id"] == first]


def formula_text(key: str) -> str:
    if key == NATIVE:
        return NATIVE_FORMULA
    return ATTENTION.get(key).formula if key in ATTENTION else "?"


def backbone_table(sites: pd.DataFrame) -> pd.DataFrame:
    """One row per attention, stage and channel count: instances, per-instance formula and count, ok."""
    grouped = sites.groupby(
        ["attention", "attention_key", "stage", "channels", "formula_params", "counted_params"], sort=False
    )
    table = grouped.agg(instances=("path", "size"), ok=("ok", "all")).reset_index()
    table.insert(2, "formula", table.pop("attention_key").map(formula_text))
    table["ok"] = table["ok"].map({True: "yes", False: "NO"})
    return table[["attention", "stage", "channels", "instances", "formula", "formula_params", "counted_params", "ok"]]


def se_closed_form(sites: pd.DataFrame, reduction: int) -> str:
    """SE's parameters over a network, (2/r)·Σ_s N_s·C_s², against the instances listed one by one."""
    listing = sites[["path", "stage", "channels", "formula_params", "counted_params"]]
    total = pd.DataFrame(
        [{"path": "sum", "stage": "", "channels": "", "formula_params": listing["formula_params"].sum(),
          "counted_params": listing["counted_params"].sum()}]
    )
    per_stage = sites.groupby(["stage", "channels"], sort=False).size()
    closed = 2 * sum(n * channels**2 for (_, channels), n in per_stage.items()) // reduction
    terms = " + ".join(f"{n}·{channels}²" for (_, channels), n in per_stage.items())
    counted = int(listing["counted_params"].sum())
    verdict = "equals" if closed == counted else "does NOT equal"
    return "\n".join(
        [
            frame_table(pd.concat([listing, total], ignore_index=True)),
            "",
            f"Closed form (2/r)·Σ N_s·C_s² = (2/{reduction})·({terms}) = {fmt_number(closed)}, which "
            f"{verdict} the {fmt_number(counted)} parameters counted over the {len(listing)} instances.",
        ]
    )


@SECTIONS.register("Formula verification")
def formula_section(run: Run) -> str | None:
    if run.sites.empty:
        return None
    sites = instances(run)
    lines = [
        "Each attention instance's parameters from its module's analytic formula, at the instance's "
        "channel count, against the parameters counted in the built model (attention_sites.csv). "
        "An instance shared by several sites counts once.",
        "",
    ]
    for backbone, rows in sites.groupby("backbone", sort=False):
        lines += [f"#### {backbone}", "", frame_table(backbone_table(rows)), ""]
        for label, se_rows in rows[rows["attention_key"] == SE_KEY].groupby("attention", sort=False):
            options = ATTENTION.get(SE_KEY).resolve_options(parse_options(se_rows["options"].iloc[0]))
            if options["bias"]:
                continue  # the closed form is the bias-free count
            lines += [f"SE instances in {backbone} (`{label}`, r = {options['reduction']}):", ""]
            lines += [se_closed_form(se_rows, options["reduction"]), ""]
    return "\n".join(lines).rstrip()
