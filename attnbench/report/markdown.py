"""Renders runs as Markdown a reader can act on: what was measured, on what, and what each module costs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attnbench.modules import BASELINE
from attnbench.registry import Registry
from attnbench.report import tables
from attnbench.report.plots import draw_figures
from attnbench.report.tables import group_title, groups, module_order
from attnbench.results import Run

Section = Callable[[Run], "str | None"]
SECTIONS: Registry[Section] = Registry("report section")
"""Extra per-run sections (formula verification, paper reproduction, ...): Markdown, or None when the
run has no data for them. Registered with `@SECTIONS.register(title)` in their own files."""

META_SHOWN = {
    "schema_version", "run_id", "suite", "suite_fingerprint", "host", "platform", "python", "torch",
    "torchvision", "device", "device_name", "cuda", "cudnn", "threads", "git_commit", "status",
    "start_time", "end_time", "warnings",
}
"""meta.json keys the header renders by name; every other scalar key is listed under settings."""

SETTING_LABELS = {
    "cudnn_benchmark": "cuDNN benchmark",
    "tf32": "TF32",
    "allow_tf32": "TF32",
    "allocator": "allocator",
    "copy_bandwidth_gbs": "measured copy bandwidth (GB/s)",
    "isolation": "one subprocess per case",
    "l2_flush": "L2 flush between repeats",
}

Cell = str
NOISY_LISTED = 8
"""Noisy cases named in the warnings; a run where everything is noisy gets a count, not a wall of names."""


# ---------------------------------------------------------------- numbers


def sig3(value: object) -> Cell:
    """Three significant figures without scientific notation; thousands separated."""
    if value is None or isinstance(value, str):
        return value or ""
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return ""
    if number == 0:
        return "0"
    decimals = 2 - math.floor(math.log10(abs(number)))
    rounded = round(number, decimals)
    return f"{rounded:,.0f}" if decimals <= 0 else f"{rounded:.{decimals}f}"


def fmt_number(value: object) -> Cell:
    """Counts as integers, other numbers to three significant figures, empty for missing."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return sig3(value)


def si(value: object, unit: str = "") -> Cell:
    """Large counts with an SI prefix (11.7 M, 4.11 G): a reader compares magnitudes, not digits."""
    if value is None or pd.isna(value):
        return ""
    number = float(value)  # type: ignore[arg-type]
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(number) >= scale:
            return f"{sig3(number / scale)} {prefix}{unit}"
    return f"{fmt_number(int(number)) if number.is_integer() else sig3(number)} {unit}".rstrip()


def signed(value: object) -> Cell:
    """A percentage with its sign: +5.00 costs more than the baseline, -1.20 less."""
    text = sig3(value)
    return f"+{text}" if text and not text.startswith("-") and text != "0" else text


def cell(text: object) -> Cell:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table: its column names as header, numbers by fmt_number."""
    rows = [[fmt_number(value) for value in values] for values in frame.itertuples(index=False)]
    return md_table([str(column) for column in frame.columns], rows)


def words(values: list[object]) -> str:
    return ", ".join(str(v) for v in values)


# ---------------------------------------------------------------- header


def environment_lines(run: Run) -> list[str]:
    meta = run.meta
    cuda = f", CUDA {meta['cuda']}, cuDNN {meta.get('cudnn')}" if meta.get("cuda") else ""
    commit = meta.get("git_commit")
    lines = [
        f"- run `{run.run_id}` ({meta.get('status', '?')}), {meta.get('start_time', '?')} to "
        f"{meta.get('end_time', '?')}",
        f"- device: {meta.get('device')} ({meta.get('device_name')}), {meta.get('threads')} CPU threads",
        f"- torch {meta.get('torch')}, torchvision {meta.get('torchvision')}, python {meta.get('python')}{cuda}",
        f"- host {meta.get('host')}, attnbench at commit {f'`{commit[:12]}`' if commit else 'unknown'}",
    ]
    settings = recorded_settings(meta)
    if settings:
        lines.append("- settings: " + "; ".join(f"{name}: {value}" for name, value in settings))
    return lines


def recorded_settings(meta: dict) -> list[tuple[str, str]]:
    """Flags the run recorded (cuDNN benchmark, TF32, allocator, ...), whatever the measuring code added."""
    flat: dict[str, object] = {}
    for key, value in meta.items():
        if key in META_SHOWN:
            continue
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items() if not isinstance(v, (dict, list))})
        elif not isinstance(value, list):
            flat[key] = value
    shown = {True: "on", False: "off", None: "not recorded"}
    return [
        (SETTING_LABELS.get(key, key), shown[value] if isinstance(value, bool) or value is None else fmt_number(value))
        for key, value in flat.items()
    ]


def measured_lines(run: Run) -> list[str]:
    """One paragraph saying what was measured, over which grid, and how latency was taken."""
    suite = run.meta.get("suite", {})
    cases = run.cases
    axes = [
        ("backbones", cases["backbone"].unique()),
        ("attention modules", cases["attention"].unique()),
        ("batch sizes", sorted(cases["batch_size"].unique())),
        ("resolutions (px)", sorted(cases["resolution"].unique())),
        ("dtypes", cases["dtype"].unique()),
        ("modes", cases["mode"].unique()),
        ("device", cases["device"].unique()),
    ]
    grid = "; ".join(f"{name} {words(list(values))}" for name, values in axes)
    text = (
        f"**What was measured.** Metrics {words(suite.get('metrics', ['?']))} on {len(cases)} cases: {grid}. "
        f"`none` is the plain backbone; every other row is the same backbone with the module inserted."
    )
    timing = suite.get("timing")
    repeats = pd.to_numeric(cases["repeats"], errors="coerce").dropna()
    if timing and not repeats.empty:
        counts = words(sorted({int(repeats.min()), int(repeats.max())})).replace(", ", " to ")
        text += (
            f" Latency is the median of {counts} timed calls per case, after "
            f"{timing.get('warmup')} warm-up calls, within a budget of {timing.get('max_seconds')} s per case."
        )
    return [text]


def warning_lines(run: Run) -> list[str]:
    """What a reader must know before trusting the numbers: unfinished runs, noise, failed cases."""
    cases = tables.normalized(run.cases)
    lines = [f"- {text}" for text in run.meta.get("warnings") or []]
    if run.meta.get("status") != "complete":
        lines.append(f"- the run is **{run.meta.get('status', 'of unknown status')}**: cases after the last row "
                     "were not measured")
    noisy = cases[cases["noisy"]]
    if not noisy.empty:
        names = [f"{r.backbone} {r.attention} batch {r.batch_size}" for r in noisy.itertuples()]
        more = f" and {len(names) - NOISY_LISTED} more" if len(names) > NOISY_LISTED else ""
        lines.append(f"- {len(noisy)} of {len(cases)} cases are noisy (IQR over 10% of the median): "
                     f"{words(names[:NOISY_LISTED])}{more}; their latencies and overheads are uncertain")
    counts = cases.loc[cases["status"] != "ok", "status"].value_counts()
    if not counts.empty:
        lines.append(f"- {words([f'{n} {status}' for status, n in counts.items()])}: see *Cases that did not finish*")
    ok = cases[cases["status"] == "ok"]
    for key, group in groups(ok):
        if BASELINE not in set(group["attention"]):
            lines.append(f"- {group_title(key)}: no finished `{BASELINE}` case, so no overheads there")
    return ["**Warnings**", "", *lines] if lines else []


# ---------------------------------------------------------------- tables


def _status_of(run: Run) -> dict[tuple, str]:
    """Status of each unfinished case by (group key, attention, batch), to fill cells a table lacks."""
    cases = tables.normalized(run.cases)
    bad = cases[cases["status"] != "ok"]
    return {
        (tuple(r[c] for c in ["backbone", *tables.SETTING]), r["attention"], r["batch_size"]): r["status"]
        for _, r in bad.iterrows()
    }


def _first(rows: pd.DataFrame, column: str) -> object:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=float)
    return values.iloc[0] if not values.empty else None


COST_WORDS = {
    "latency_overhead_pct": "latency", "flops_overhead_pct": "FLOPs", "macs_overhead_pct": "MACs",
    "params_overhead_pct": "parameters",
}


def cheapest_sentence(frame: pd.DataFrame, title: str) -> str:
    """Names the cheapest and the dearest module by the best cost measured; says when noise blurs it."""
    column, cost, batches = tables.module_costs(frame)
    if column is None or cost.empty:
        return ""
    what = COST_WORDS[column]
    timed = column == "latency_overhead_pct"
    where = ""
    if timed:
        where = f" (mean over batch sizes {words(batches)})" if len(batches) > 1 else f" at batch size {batches[0]}"
    if len(cost) == 1:
        text = f"Only `{cost.index[0]}` was measured on {title}: {signed(cost.iloc[0])}% {what} over `{BASELINE}`{where}"
    else:
        text = f"**Cheapest in {what} on {title}: `{cost.index[0]}`**, {signed(cost.iloc[0])}% over `{BASELINE}`{where}"
        text += f"; the most expensive is `{cost.index[-1]}`, {signed(cost.iloc[-1])}%"
        if timed and _tied(frame, cost.index[0], cost.index[1], batches):
            text += (f". `{cost.index[0]}` and `{cost.index[1]}` are within noise of each other: their 95% "
                     "confidence intervals overlap at every batch size")
    noisy = int(tables.as_flag(frame["noisy"]).sum()) if timed and "noisy" in frame else 0
    if noisy:
        text += f". {noisy} of the {len(frame)} cases behind this are noisy: rerun on a quieter machine"
    return text + "."


def _tied(frame: pd.DataFrame, first: str, second: str, batches: list) -> bool:
    if not tables.measured(frame, ["latency_ms_ci_low", "latency_ms_ci_high"]):
        return False
    a = frame[frame["attention"] == first].set_index("batch_size")
    b = frame[frame["attention"] == second].set_index("batch_size")
    both = a.index.intersection(b.index).intersection(batches)
    low_a, high_a = (pd.to_numeric(a.loc[both, c]) for c in ("latency_ms_ci_low", "latency_ms_ci_high"))
    low_b, high_b = (pd.to_numeric(b.loc[both, c]) for c in ("latency_ms_ci_low", "latency_ms_ci_high"))
    overlap = (low_a <= high_b) & (low_b <= high_a)
    return bool(len(both)) and bool(overlap.all())


@dataclass(frozen=True)
class OverheadColumn:
    """A column of the overhead table: the cell of a module's rows, and the absolute cell of `none`'s rows."""

    header: str
    relative: Callable[[pd.DataFrame], Cell]
    absolute: Callable[[pd.DataFrame], Cell]


def overhead_columns(group: pd.DataFrame, at: Callable[[int, str, Callable], Callable]) -> list[OverheadColumn]:
    """The columns one group measured; `at(batch, column, show)` reads one batch size's cell."""
    batches = sorted(group["batch_size"].unique())
    smallest, largest = batches[0], batches[-1]
    columns = [
        OverheadColumn("params added", lambda r: si(_first(r, "params_attention")), lambda b: si(_first(b, "params"))),
        OverheadColumn("params (%)", lambda r: signed(_first(r, "params_overhead_pct")), lambda b: ""),
    ]
    for measure, label, unit in (("macs", "MACs", ""), ("flops", "FLOPs", ""), ("bytes_eager", "bytes", "B")):
        prefix = tables.OVERHEAD_OF[measure]
        if tables.measured(group, [f"{prefix}_overhead_pct"]):
            columns.append(OverheadColumn(
                f"{label} (%)",
                lambda r, p=prefix: signed(_first(r, f"{p}_overhead_pct")),
                lambda b, m=measure, u=unit: f"{si(_first(b[b['batch_size'] == smallest], m), u)} at batch {smallest}",
            ))
    if tables.measured(group, ["latency_overhead_pct"]):
        columns += [
            OverheadColumn(f"latency b={n} (%)", at(n, "latency_overhead_pct", signed),
                           at(n, "latency_ms_median", lambda v: f"{sig3(v)} ms"))
            for n in batches
        ]
    for column, header, absolute, unit in (
        ("throughput_ratio", f"throughput ratio b={largest}", "throughput_ips", "img/s"),
        ("peak_mem_overhead_pct", f"peak memory b={largest} (%)", "peak_mem_mib", "MiB"),
    ):
        if tables.measured(group, [column]):
            show = sig3 if column == "throughput_ratio" else signed
            columns.append(OverheadColumn(header, at(largest, column, show),
                                          at(largest, absolute, lambda v, u=unit: f"{sig3(v)} {u}")))
    return columns


def overhead_part(run: Run) -> list[str]:
    """Per backbone and setting: one row per module, costs in % over `none`, cheapest first."""
    full = tables.with_overhead(run.cases)
    if full.empty:
        return []
    status = _status_of(run)
    lines = ["### Overhead over the plain backbone", "",
             "Each module's cost relative to `none` in the same setting; the `none` row gives absolute numbers. "
             "Bytes are the eager memory traffic (every operator reads its inputs and writes its output).", ""]
    for key, group in groups(full):

        def at(batch: int, column: str, show: Callable[[object], Cell], key: tuple = key) -> Callable:
            """A cell at one batch size, or the case's status (error, oom, ...) when it did not finish there."""

            def read(rows: pd.DataFrame) -> Cell:
                found = rows.loc[rows["batch_size"] == batch, column] if column in rows else pd.Series(dtype=float)
                if not found.empty and pd.notna(found.iloc[0]):
                    return show(found.iloc[0])
                return status.get((key, rows["attention"].iloc[0], batch), "")

            return read

        columns = overhead_columns(group, at)
        rows = []
        for attention in module_order(group):
            module = group[group["attention"] == attention]
            if attention == BASELINE:
                rows.append([f"{BASELINE} (absolute)", *[column.absolute(module) for column in columns]])
            else:
                rows.append([attention, *[column.relative(module) for column in columns]])
        title = group_title(key)
        lines += [f"#### {title}", "", cheapest_sentence(group, title), "",
                  md_table(["attention", *[column.header for column in columns]], rows), ""]
    return lines


WORK_SHARES = {"macs_share_pct": "MACs", "flops_share_pct": "FLOPs", "bytes_share_pct": "bytes"}


def shares_part(run: Run) -> list[str]:
    """Each module's share of the network's work beside its share of the network's time."""
    frame = tables.shares(run.cases)
    if frame.empty or "latency_share_pct" not in frame or len(frame.columns) <= len(tables.KEY) + 1:
        return []
    lines = ["### FLOPs are not latency", "",
             "The part of the whole network each module accounts for: share = (with module − without) / with "
             "module, the same rule for MACs, FLOPs, bytes and latency. A module with a small share of the "
             "arithmetic and a large share of the time is memory- or launch-bound.", ""]
    status = _status_of(run)
    for key, group in groups(frame):
        batches = sorted(group["batch_size"].unique())
        quantities = [c for c in WORK_SHARES if tables.measured(group, [c])]
        extras = [(c, n) for c, n in (("module_alone_share_pct", "module alone"), ("profiled_share_pct", "profiled"))
                  if tables.measured(group, [c])]
        header = ["attention", *[f"{WORK_SHARES[c]} share (%)" for c in quantities]]
        header += [f"latency share b={b} (%)" for b in batches]
        header += [f"{name} b={batches[-1]} (%)" for _, name in extras]
        rows = []
        for attention, module in group.groupby("attention", sort=False):
            at = module.set_index("batch_size")
            rows.append([
                attention,
                *[sig3(_first(module, c)) for c in quantities],
                *[sig3(at["latency_share_pct"].get(b)) or status.get((key, attention, b), "") for b in batches],
                *[sig3(at[c].get(batches[-1])) for c, _ in extras],
            ])
        lines += [f"#### {group_title(key)}", "", _contrast(group, quantities), "", md_table(header, rows), ""]
    return lines


def _contrast(group: pd.DataFrame, quantities: list[str]) -> str:
    """One sentence on the module whose time share most exceeds its arithmetic share."""
    work = next((c for c in ("flops_share_pct", "macs_share_pct") if c in quantities), None)
    if work is None:
        return ""
    rows = group[(group[work] > 0) & group["latency_share_pct"].notna()]
    if rows.empty:
        return ""
    row = rows.loc[(rows["latency_share_pct"] / rows[work]).idxmax()]
    return (f"For example, `{row['attention']}` accounts for {sig3(row[work])}% of the "
            f"{'FLOPs' if work.startswith('flops') else 'MACs'} but {sig3(row['latency_share_pct'])}% of the latency "
            f"at batch {row['batch_size']}.")


def pivot_part(title: str, explanation: str, frame: pd.DataFrame, value: str, unit: str,
               show: Callable[[pd.Series], Cell]) -> list[str]:
    """A batch x resolution pivot of one measured value; `show` renders one case's numbers."""
    if value not in frame or frame.empty:
        return []
    pivot = tables.grid_pivot(frame, [c for c in frame.columns if c not in tables.KEY])
    index = list(pivot.index.names)
    grid = list(dict.fromkeys((b, r) for _, b, r in pivot.columns))
    rows = []
    for keys, values in pivot.iterrows():
        keys = keys if isinstance(keys, tuple) else (keys,)
        per_case = [values.xs((b, r), level=(1, 2)) for b, r in grid]
        rows.append([*[str(k) for k in keys], *[show(case) for case in per_case]])
    header = [*[name.replace("_", " ") for name in index], *[f"b={b}, {r} px ({unit})" for b, r in grid]]
    return [f"### {title}", "", explanation, "", md_table(header, rows), ""]


def _latency_cell(case: pd.Series) -> Cell:
    median = sig3(case.get("latency_ms_median"))
    if not median:
        return ""
    if pd.notna(case.get("latency_ms_ci_low")) and pd.notna(case.get("latency_ms_ci_high")):
        median += f" ({sig3(case['latency_ms_ci_low'])}–{sig3(case['latency_ms_ci_high'])})"
    elif pd.notna(case.get("latency_ms_iqr")):
        median += f" (IQR {sig3(case['latency_ms_iqr'])})"
    return median + (" †" if str(case.get("noisy")) == "True" else "")


def grid_parts(run: Run) -> list[str]:
    return [
        *pivot_part(
            "Latency", "Median latency per call in ms, with the bootstrap 95% confidence interval of the median in "
            "parentheses; † marks noisy cases (IQR over 10% of the median).",
            tables.latency(run.cases), "latency_ms_median", "ms", _latency_cell,
        ),
        *pivot_part(
            "Throughput", "Images per second: batch size / median latency.",
            tables.throughput(run.cases), "throughput_ips", "img/s", lambda case: sig3(case.get("throughput_ips")),
        ),
        *pivot_part(
            "Peak memory", "Peak memory of one forward pass above what was allocated before it, in MiB.",
            tables.memory(run.cases), "peak_mem_mib", "MiB", lambda case: sig3(case.get("peak_mem_mib")),
        ),
    ]


def extra_parts(run: Run) -> list[str]:
    lines: list[str] = []
    for title, render_section in SECTIONS.items():
        body = render_section(run)
        if body:
            lines += [f"### {title}", "", body.strip(), ""]
    return lines


def figure_parts(run: Run, figures: Path | None, relative_to: Path) -> list[str]:
    drawn = draw_figures(run, figures) if figures else []
    if not drawn:
        return []
    lines = ["### Figures", ""]
    for caption, path in drawn:
        lines += [f"![{caption}]({path.relative_to(relative_to).as_posix()})", ""]
    return lines


def problem_parts(run: Run) -> list[str]:
    problems = tables.problem_cases(run.cases)
    if problems.empty:
        return []
    rows = [[str(v) for v in row] for row in problems.itertuples(index=False)]
    header = ["backbone", "attention", "batch", "res (px)", "dtype", "mode", "device", "status", "reason"]
    return ["### Cases that did not finish", "", md_table(header, rows), ""]


def run_section(run: Run, figures: Path | None, relative_to: Path) -> str:
    suite = run.meta.get("suite", {})
    lines = [f"## Suite `{run.suite_name}`, run `{run.run_id}`", ""]
    if suite.get("description"):
        lines += [suite["description"], ""]
    lines += measured_lines(run) + [""] + environment_lines(run) + [""]
    warnings = warning_lines(run)
    if warnings:
        lines += warnings + [""]
    if run.cases.empty:
        return "\n".join(lines + ["No case was measured.", ""])
    lines += overhead_part(run)
    lines += shares_part(run)
    lines += grid_parts(run)
    lines += extra_parts(run)
    lines += figure_parts(run, figures, relative_to)
    lines += problem_parts(run)
    return "\n".join(lines)


def render(runs: list[Run], figures: Path | None = None, relative_to: Path = Path(".")) -> str:
    """The report of `runs`; figures go to `figures` and are linked relative to `relative_to`."""
    summary = [
        [f"`{run.suite_name}`", f"`{run.run_id}`", run.meta.get("status", "?"), run.meta.get("start_time", "?"),
         f"{run.meta.get('device')} ({run.meta.get('device_name')})",
         f"{int((run.cases['status'] == 'ok').sum())} / {len(run.cases)}"]
        for run in runs
    ]
    head = [
        "# attnbench report", "",
        "What channel and spatial attention modules cost inside CNN backbones, measured by attnbench: for each "
        "run, what was measured and on what, then each module's cost relative to the plain backbone (`none`), "
        "the latency, throughput and memory over the batch x resolution grid, figures, and every case that did "
        "not finish.", "",
        md_table(["suite", "run", "status", "started (UTC)", "device", "cases ok / total"], summary), "",
    ]
    body = [run_section(run, figures, relative_to) for run in runs]
    return "\n".join(head + body).rstrip() + "\n"


def render_comparison(a: Run, b: Run) -> str:
    """Two runs side by side: environment differences, then each case's B/A ratios."""
    fields = ["suite", "status", "start_time", "device", "device_name", "threads", "torch", "torchvision", "cuda",
              "git_commit"]
    meta = {"a": {**a.meta, "suite": a.suite_name}, "b": {**b.meta, "suite": b.suite_name}}
    settings = {side: dict(recorded_settings(run.meta)) for side, run in (("a", a), ("b", b))}
    env_rows = [[f, str(meta["a"].get(f)), str(meta["b"].get(f))] for f in fields]
    env_rows += [[name, settings["a"].get(name, ""), settings["b"].get(name, "")]
                 for name in dict.fromkeys([*settings["a"], *settings["b"]])]
    env_rows = [[f"**{r[0]}**" if r[1] != r[2] else r[0], r[1], r[2]] for r in env_rows]
    table = tables.compare(a.cases, b.cases)
    both = table[table["latency_ratio"].notna()]
    lines = [
        "# attnbench comparison", "",
        f"A = run `{a.run_id}` (suite `{a.suite_name}`), B = run `{b.run_id}` (suite `{b.suite_name}`). Cases are "
        "matched by case id (the same spec gives the same id); ratios are B / A, so a latency ratio below 1 means "
        "B is faster. Fields that differ are in bold.", "",
        md_table(["field", "A", "B"], env_rows), "",
    ]
    if not both.empty:
        geomean = float(np.exp(np.log(both["latency_ratio"]).mean()))
        apart = int((~both["ci_overlap"]).sum()) if table["latency_ms_ci_low_a"].notna().any() else None
        text = f"Over the {len(both)} cases both runs timed, the geometric mean latency ratio B/A is {sig3(geomean)}"
        if apart is not None:
            text += f"; {apart} of them have confidence intervals that do not overlap"
        lines += [text + ".", ""]
    columns = [
        ("latency A (ms)", "latency_ms_median_a", sig3), ("latency B (ms)", "latency_ms_median_b", sig3),
        ("latency B/A", "latency_ratio", sig3), ("throughput A (img/s)", "throughput_ips_a", sig3),
        ("throughput B (img/s)", "throughput_ips_b", sig3), ("throughput B/A", "throughput_ratio", sig3),
        ("peak memory B/A", "peak_mem_ratio", sig3), ("status A", "status_a", str), ("status B", "status_b", str),
    ]
    columns = [(n, c, f) for n, c, f in columns if c.startswith("status") or table[c].notna().any()]
    rows = [
        [r["backbone"], r["attention"], str(r["batch_size"]), str(int(r["resolution"])), r["dtype"], r["mode"],
         *[show(r[c]) for _, c, show in columns]]
        for _, r in table.iterrows()
    ]
    header = ["backbone", "attention", "batch", "res (px)", "dtype", "mode", *[n for n, _, _ in columns]]
    lines += [md_table(header, rows), ""]
    return "\n".join(lines)
