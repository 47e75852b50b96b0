"""Where the time goes: the tables of `attnbench profile`, and the report section of the profile metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from attnbench.report.format import frame_table
from attnbench.report.markdown import SECTIONS
from attnbench.report.tables import AXES, axis_value, varying
from attnbench.report.view import RunView

if TYPE_CHECKING:
    from attnbench.measure.profile import StepProfile

Titled = tuple[str, pd.DataFrame]
CLOCKS = {"self_cpu_us": "CPU", "self_device_us": "CUDA"}
PROFILE_NOTE = (
    "Times are per step under the profiler, which slows every operator a little, over a few steps: read "
    "them for where the time goes; `attnbench run` with the latency metric measures what the module costs."
)


def _clocks(result: StepProfile) -> list[str]:
    return ["self_cpu_us", "self_device_us"] if result.on_device else ["self_cpu_us"]


def _summary_row(name: str, result: StepProfile) -> dict[str, object]:
    row: dict[str, object] = {
        "model": name,
        STEP_MS: result.mean_step_ms,
        "operators / step": result.operators_per_step,
    }
    if result.on_device:
        row["CUDA kernels / step"] = result.kernels_per_step
    for column in _clocks(result):
        row[f"attention share, {CLOCKS[column]} (%)"] = result.attention_share(column) * 100
    return row


STEP_MS = "profiled step (ms)"
NOISY_ADDED_TIME = (
    "the added step time is left out: it is within the spread of the profiled steps (more --steps, or "
    "`attnbench run` for the module's cost)"
)


def added_time_is_noise(result: StepProfile, baseline: StepProfile) -> bool:
    """Whether the module's added step time is no larger than the step-to-step spread of either profile:
    over a few profiled steps a small cost can read negative."""
    spread = max(max(steps) - min(steps) for steps in (result.step_ms, baseline.step_ms))
    return result.mean_step_ms - baseline.mean_step_ms <= spread


def summary(result: StepProfile, baseline: StepProfile | None, backbone: str) -> pd.DataFrame:
    """Per step: time, operators, kernels and attention share, alone and with the module, and the difference
    (the time left out when it is noise)."""
    rows = [_summary_row(f"{backbone} + {result.label}", result)]
    if baseline is not None:
        rows.insert(0, _summary_row(f"{backbone} alone", baseline))
        counts = [c for c in rows[0] if c.endswith("/ step") or c.endswith("(ms)")]
        added = {c: rows[1][c] - rows[0][c] for c in counts}
        if added_time_is_noise(result, baseline):
            added[STEP_MS] = float("nan")
        rows.append({"model": "added", **added})
        instances = len(result.stages)
        if instances:
            rows.append({"model": f"added per instance ({instances})", **{c: v / instances for c, v in added.items()}})
    return pd.DataFrame(rows)


def top_operators(result: StepProfile, column: str, count: int, attention_only: bool = False) -> pd.DataFrame:
    clock = CLOCKS[column]
    table = result.top_ops(column, count, attention_only)
    share = "share of attention time (%)" if attention_only else "share of total (%)"
    frame = pd.DataFrame(
        {
            "operator": table.index,
            "calls / step": table["calls"].values,
            f"self {clock} (ms / step)": table["ms"].values,
            share: table["pct"].values,
        }
    )
    if not attention_only and result.stages:
        frame["inside attention (%)"] = table["attention_pct"].values
    return frame


def stages(result: StepProfile) -> pd.DataFrame:
    counts = result.by_stage()
    frame = pd.DataFrame({"stage": counts.index, "instances": counts["instances"].values})
    for column in _clocks(result):
        table = result.by_stage(column)
        frame[f"{CLOCKS[column]} (ms / step)"] = table["ms"].values
        frame[f"{CLOCKS[column]} share of total (%)"] = table["pct"].values
    return frame


def profile_tables(
    result: StepProfile, baseline: StepProfile | None, backbone: str, count: int = 10
) -> list[Titled]:
    """The breakdown `attnbench profile` prints: summary, top operators per clock, attention by stage and inside."""
    title = f"{backbone} + {result.label}: per step"
    if baseline is not None and added_time_is_noise(result, baseline):
        title += f"; {NOISY_ADDED_TIME}"
    tables: list[Titled] = [(title, summary(result, baseline, backbone))]
    for column in _clocks(result):
        tables.append((f"Top operators by self {CLOCKS[column]} time", top_operators(result, column, count)))
    if result.stages:
        tables.append(("Attention time by stage", stages(result)))
        tables.append(
            (
                f"Inside the attention modules: top operators by self {CLOCKS[result.time_column]} time",
                top_operators(result, result.time_column, count, attention_only=True),
            )
        )
    return [(title, readable(frame)) for title, frame in tables]


COUNTS = ("operators / step", "CUDA kernels / step", "calls / step", "instances", "launches / step", "launches added")
"""Columns that count things: a whole number prints as 20, not 20.0 (a mean over steps may still be 7.50)."""


def _whole(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers, and other values of 1000 and more rounded to whole numbers, so that they print
    as 20 and 1,234 rather than 20.0 and 1.23e+03."""
    return frame.apply(
        lambda column: column.map(_whole) if column.name in COUNTS else
        column.map(lambda v: float(round(v)) if isinstance(v, float) and abs(v) >= 1000 else v)
    )


def profile_markdown(heading: str, tables: list[Titled]) -> str:
    lines = [f"# {heading}", "", PROFILE_NOTE, ""]
    for title, frame in tables:
        lines += [f"## {title}", "", frame_table(frame), ""]
    return "\n".join(lines)


@SECTIONS.register("Where the time goes")
def where_time_goes(run: RunView) -> str | None:
    """The profile metric beside the latency overhead: how much of each network's time its attention
    modules take, and how many launches (CUDA kernels, or CPU operators) they add over `none`."""
    table = run.overhead
    if "attention_time_share" not in table or table["attention_time_share"].isna().all():
        return None
    table = table[table["kernel_count"].notna()]
    axes = [c for c in varying(run.cases) if c != "backbone"]  # every axis that varies in the run: no twin rows
    frame = pd.DataFrame(
        {
            "backbone": table["backbone"],
            "attention": table["attention"],
            **{AXES[c]: table[c].map(lambda value, c=c: axis_value(c, value)) for c in axes},
            "latency vs none (%)": table["latency_overhead_pct"],
            "time in attention (%)": table["attention_time_share"] * 100,
            "launches / step": table["kernel_count"],
            "launches added": table["launches_added"],
            "top attention operators": table["attention_top_ops"].fillna(""),
        }
    )
    if table["runtime"].nunique() > 1:  # eager and inductor rows of one module
        frame.insert(2, "runtime", table["runtime"])
    note = (
        "Launches are CUDA kernels per step on a GPU and dispatched operators per step on the CPU; time "
        "in attention is kernel time on a GPU and CPU time on the CPU, measured under torch.profiler."
    )
    return frame_table(readable(frame)) + "\n\n" + note
