"""The formula verification section: each attention instance's analytic parameter count (the module
registry's formula at the instance's channels) against the parameters counted in the built model
(attention_sites.csv), and the network's sum Σ_s N_s·f(C_s) against the count over all instances."""

from __future__ import annotations

import pandas as pd

from attnbench.backbones import NATIVE_FORMULA
from attnbench.modules import ATTENTION, NATIVE
from attnbench.report.format import fmt_number, frame_table, plural
from attnbench.report.markdown import SECTIONS
from attnbench.report.view import RunView


def instances(run: RunView) -> pd.DataFrame:
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


def network_sum(label: str, sites: pd.DataFrame) -> str:
    """Σ_s N_s·f(C_s) over the network's instances, term by term, against their counted parameters."""
    per_channels = sites.groupby("channels", sort=False).agg(
        count=("path", "size"), formula=("formula_params", "first")
    )
    terms = " + ".join(f"{n}·f({channels})" for channels, n in per_channels["count"].items())
    values = " + ".join(f"{n}·{fmt_number(int(f))}" for n, f in zip(per_channels["count"], per_channels["formula"]))
    total = int((per_channels["count"] * per_channels["formula"]).sum())
    counted = int(sites["counted_params"].sum())
    verdict = "equals" if total == counted else "does NOT equal"
    return (
        f"`{label}`, f(C) = {formula_text(sites['attention_key'].iloc[0])}: Σ N_s·f(C_s) = {terms} = {values} = "
        f"{fmt_number(total)}, which {verdict} the {fmt_number(counted)} parameters counted over its "
        f"{plural(len(sites), 'instance')}."
    )


@SECTIONS.register("Formula verification")
def formula_section(run: RunView) -> str | None:
    if run.sites.empty:
        return None
    sites = instances(run)
    lines = [
        "Each attention instance's parameters from its module's analytic formula f(C), at the instance's "
        "channel count C, against the parameters counted in the built model (attention_sites.csv). An "
        "instance shared by several sites counts once.",
        "",
    ]
    for backbone, rows in sites.groupby("backbone", sort=False):
        lines += [f"#### {backbone}", "", frame_table(backbone_table(rows)), ""]
        lines += [f"- {network_sum(label, group)}" for label, group in rows.groupby("attention", sort=False)]
        lines.append("")
    unknown = [key for key in dict.fromkeys(sites["attention_key"].dropna()) if key not in ATTENTION]
    if unknown:
        lines.append(
            f"The formula of {', '.join(f'`{key}`' for key in unknown)} is shown as ? because no module of that "
            "name is registered where this report was written: a plugin's modules are registered by the project "
            "whose attnbench.toml lists it in `plugins`, so write the report from that project's folder."
        )
    return "\n".join(lines).rstrip()
