"""The head of a run's report: what was measured, on what, and the warnings to read first."""

from __future__ import annotations

import pandas as pd

from attnbench.calibration import noise_floor_sentence
from attnbench.measure.stats import NOISY_IQR_FRACTION, relative_half_width
from attnbench.modules import BASELINE
from attnbench.report.format import fmt_number, plural, words
from attnbench.report.missing import missing_line
from attnbench.report.tables import axis_value, group_title, groups, varying
from attnbench.report.view import RunView
from attnbench.results import SETTING

NOISY_TEXT = f"IQR over {NOISY_IQR_FRACTION:.0%} of the median"
"""How every part of a report says what `noisy` means."""

META_SHOWN = {
    "schema_version", "run_id", "suite", "suite_fingerprint", "host", "platform", "python", "torch",
    "torchvision", "device", "device_name", "cuda", "cudnn", "threads", "git_commit", "status",
    "start_time", "end_time", "warnings", "migrated_from", "calibration", "process_facts", "left_out",
}
"""meta.json keys the header renders by name; every other scalar key is listed under settings."""

SETTING_LABELS = {
    "cudnn_benchmark": "cuDNN benchmark",
    "tf32": "TF32",
    "tf32.matmul": "TF32 matmuls",
    "tf32.cudnn": "TF32 convolutions (cuDNN)",
    "tf32.float32_matmul_precision": "float32 matmul precision",
    "tf32.set_by_suite": "TF32 set by the suite",
    "low_precision": "float16/bfloat16 run as",
    "allocator": "allocator",
    "copy_bandwidth_gbs": "measured copy bandwidth (GB/s)",
    "isolate": "one worker process per group",
    "l2_flush": "L2 flush between repeats",
    "driver": "GPU driver",
    "power_limit_w": "GPU power limit (W)",
    "max_sm_clock_mhz": "maximum SM clock (MHz)",
    "max_mem_clock_mhz": "maximum memory clock (MHz)",
    "suite_source": "suite file",
    "suite_file_fingerprint": "suite file fingerprint",
    "allocator.libc": "C library",
    "allocator.configured": "allocator keeps freed memory",
    "allocator.mmap_max": "glibc M_MMAP_MAX",
    "allocator.trim_threshold_bytes": "glibc M_TRIM_THRESHOLD (bytes)",
    "copy_buffer_bytes": "copy bandwidth buffer (bytes)",
}

CUDA_SETTINGS = ("cudnn_benchmark", "tf32", "driver", "power_limit_w", "max_sm_clock_mhz", "max_mem_clock_mhz")
"""Settings that only act on a GPU: a CPU run's header leaves them out."""

NOISY_LISTED = 8
"""Noisy cases named in the warnings; a run where everything is noisy gets a count, not a wall of names."""


def environment_lines(run: RunView) -> list[str]:
    meta = run.meta
    cuda = f", CUDA {meta['cuda']}, cuDNN {meta.get('cudnn')}" if meta.get("cuda") else ""
    commit = meta.get("git_commit")
    migrated = f", written in results schema {meta['migrated_from']}" if meta.get("migrated_from") else ""
    lines = [
        f"- run `{run.run_id}` ({meta.get('status', '?')}{migrated}), {meta.get('start_time', '?')} to "
        f"{meta.get('end_time', '?')}",
        f"- device: {meta.get('device')} ({meta.get('device_name')}), {plural(meta.get('threads'), 'CPU thread')}",
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
    on_cpu = str(meta.get("device", "")).startswith("cpu")
    for key, value in meta.items():
        if key in META_SHOWN or (on_cpu and key in CUDA_SETTINGS):
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


def measured_lines(run: RunView) -> list[str]:
    """One paragraph saying what was measured, over which grid, and how latency was taken."""
    suite = run.meta.get("suite", {})
    # The grid the run was asked for, where it can be rebuilt: an interrupted run has rows for part of it.
    cases = pd.DataFrame(run.grid) if run.grid else run.cases
    axes = [
        ("backbones", cases["backbone"].unique()),
        ("attention modules", cases["attention"].unique()),
        ("batch sizes", sorted(cases["batch_size"].unique())),
        ("resolutions (px)", sorted(cases["resolution"].unique())),
        ("dtypes", cases["dtype"].unique()),
        ("modes", cases["mode"].unique()),
        ("device", cases["device"].unique()),
    ]
    if run.runtimes:
        axes.append(("runtimes", cases["runtime"].unique()))
    grid = "; ".join(f"{name} {words(list(values))}" for name, values in axes)
    text = (
        f"**What was measured.** Metrics {words(suite.get('metrics', ['?']))} on {_counted(run)}: {grid}. "
        f"`none` is the plain backbone; every other row is the same backbone with the module inserted."
    )
    timing = suite.get("timing")
    repeats = pd.to_numeric(run.cases["repeats"], errors="coerce").dropna()
    if timing and not repeats.empty:
        counts = words(sorted({int(repeats.min()), int(repeats.max())})).replace(", ", " to ")
        warm_up = plural(timing.get("warmup"), "warm-up call")
        if timing.get("warmup_seconds") is not None and (timing.get("warmup") or 0) > 1:
            warm_up = f"up to {warm_up} (fewer once they took {timing['warmup_seconds']:g} s)"
        text += (
            f" Latency is the median of {counts} timed calls per case, after {warm_up}, within a budget of "
            f"{timing.get('max_seconds')} s per case."
        )
    text += timing_sentence(run)
    counted = ["training step (forward, backward, SGD)"] if run.trains else []
    counted += [f"step as {words(run.runtimes)} run{'s' if len(run.runtimes) == 1 else ''} it"] if run.runtimes else []
    if counted and "complexity" in suite.get("metrics", []):
        text += (
            " MACs, FLOPs and bytes count one eval forward of the eager model, while latency times the "
            + " and the ".join(counted) + ": compare their shares, not their absolute values."
        )
    return [text]


def timing_sentence(run: RunView) -> str:
    """How precisely the overheads were timed, and how much of the run's wall time the timed calls took."""
    timing = run.meta.get("suite", {}).get("timing", {})
    text = ""
    met = run.cases["precision_met"].dropna().map(lambda flag: str(flag) == "True")
    if timing.get("precision") and not met.empty:
        text += (
            f" Each group was timed until every overhead's 95% interval was within ±{timing['precision']:g} points "
            f"(of the median, for a group without `none`) or for {timing.get('max_seconds')} s per case: "
            f"{int(met.sum())} of {len(met)} cases reached it."
        )
        if not met.all():
            text += budget_sentence(run, float(timing["precision"]))
    start, end = (pd.to_datetime(run.meta.get(key), errors="coerce") for key in ("start_time", "end_time"))
    timed_s = pd.to_numeric(run.samples["wall_ms"], errors="coerce").sum() / 1e3
    if timed_s > 0 and pd.notna(start) and pd.notna(end) and not run.meta.get("resumed"):
        wall_s = (end - start).total_seconds()
        executor = run.meta.get("executor") or {}
        workers = int(executor.get("workers") or 1)
        if executor.get("kind") == "slurm":  # tasks of a job array: the driver's wall time includes their queueing
            text += f" The timed calls took {timed_s:.1f} s over the job array's tasks."
        elif wall_s > 0:
            on = f" on {workers} workers" if workers > 1 else ""
            share = f"{timed_s / (wall_s * workers):.0%}" + (" of their time" if workers > 1 else "")
            text += (f" The timed calls took {timed_s:.1f} s of the run's {wall_s:.0f} s{on} ({share}); "
                     "the rest went to building, warm-up, counting and the other metrics.")
    return text


def budget_sentence(run: RunView, precision: float) -> str:
    """The `max_seconds` that would have met the precision target in every group, at this run's noise.

    An interval narrows with the square root of the calls, so a group whose widest interval is w points
    after s seconds of calls per case needs about s * (w / precision)^2. The intervals are the ones the
    target is checked on: each module's paired overhead where the group has a `none`, else each case's
    median. Empty when no group missed the target or no samples were kept.
    """
    cases = run.normalized[(run.normalized["status"] == "ok") & run.normalized["latency_ms_median"].notna()]
    samples = run.samples
    if cases.empty or samples.empty:
        return ""
    latencies = samples.groupby("case_id")["latency_ms"]
    shortfalls = []  # (seconds per case needed, seconds per case spent, widest half-width, its case)
    for _, group in cases.groupby(list(SETTING), sort=False, dropna=False):
        modules = group[group["attention"] != BASELINE]
        if len(modules) < len(group) and "latency_overhead_ci_low_pct" in group:
            widths = (modules["latency_overhead_ci_high_pct"] - modules["latency_overhead_ci_low_pct"]) / 2
        else:
            widths = pd.Series({index: relative_half_width(latencies.get_group(row.case_id))
                                for index, row in group.iterrows() if row.case_id in latencies.groups}, dtype=float)
        widths = widths.dropna()
        if widths.empty or widths.max() <= precision:
            continue
        call_s = samples.loc[samples["case_id"].isin(group["case_id"]), "wall_ms"].sum() / 1e3 / len(group)
        shortfalls.append((call_s * (widths.max() / precision) ** 2, call_s, widths.max(), group.loc[widths.idxmax()]))
    if not shortfalls:
        return ""
    needed, call_s, width, case = max(shortfalls, key=lambda shortfall: shortfall[0])
    where = ", ".join([str(case["backbone"]), str(case["attention"]), f"batch {case['batch_size']}"])
    return (
        f" At this run's noise every interval would reach it with `max_seconds` of about {_seconds(needed)} s: "
        f"an interval narrows with the square root of the calls, and the widest, ±{width:.1f} points ({where}), "
        f"came from {_seconds(call_s)} s of calls per case."
    )


def _seconds(value: float) -> str:
    """Seconds to two significant digits, whole from ten on: an estimate, not a measurement."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _counted(run: RunView) -> str:
    """`20 cases`, or `10 of the grid's 20 cases` for a run that stopped before the end of its grid."""
    if run.grid is not None and len(run.cases) != run.total:
        return f"{len(run.cases)} of the grid's {run.total} cases"
    return f"{len(run.cases)} cases"


def warning_lines(run: RunView) -> list[str]:
    """What a reader must know before trusting the numbers: unfinished runs, noise, failed cases."""
    cases = run.normalized
    lines = [f"- {text}" for text in [*(run.meta.get("warnings") or []), *run.run.warnings]]
    throttled = run.cases["throttled"].map(lambda flag: str(flag) == "True") if "throttled" in run.cases else None
    if throttled is not None and throttled.any():
        names = [f"{r.backbone} {r.attention} b{r.batch_size} ({r.throttle_reasons})" for r in run.cases[throttled].itertuples()]
        lines.append(f"- {int(throttled.sum())} case(s) were timed while the GPU throttled (clocks dropped or the "
                     f"driver reported a slowdown): {words(names[:NOISY_LISTED])}; their latencies are not the "
                     "module's alone")
    if run.meta.get("calibration"):
        lines.append(f"- {noise_floor_sentence(run.meta['calibration'])}")
    if run.meta.get("status") != "complete":
        lines.append(f"- the run is **{run.meta.get('status', 'of unknown status')}**: cases after the last row "
                     "were not measured")
    not_run = missing_line(run.missing, run.total, run.path)
    if not_run:
        lines.append(f"- {not_run}")
    lines += [f'- left out of `"*"`: {item["reason"]}' for item in run.meta.get("left_out", [])]
    noisy = cases[cases["noisy"]]
    if not noisy.empty:
        axes = [c for c in varying(cases) if c not in ("backbone", "batch_size")]  # else two names could match
        names = [" ".join([row["backbone"], row["attention"], f"batch {row['batch_size']}",
                           *[axis_value(c, row[c]) for c in axes]]) for _, row in noisy.iterrows()]
        more = f" and {len(names) - NOISY_LISTED} more" if len(names) > NOISY_LISTED else ""
        lines.append(f"- {len(noisy)} of {len(cases)} cases {'is' if len(noisy) == 1 else 'are'} noisy ({NOISY_TEXT}): "
                     f"{words(names[:NOISY_LISTED])}{more}; their latencies and overheads are uncertain")
    counts = cases.loc[cases["status"] != "ok", "status"].value_counts()
    if not counts.empty:
        lines.append(f"- {words([f'{n} {status}' for status, n in counts.items()])}: see *Cases that did not finish*")
    ok = cases[cases["status"] == "ok"]
    for key, group in groups(ok):
        if BASELINE not in set(group["attention"]):
            lines.append(f"- {group_title(key)}: no finished `{BASELINE}` case, so no overheads there")
    lines += device_lines(cases)
    return ["**Warnings**", "", *lines] if lines else []


def device_lines(cases: pd.DataFrame) -> list[str]:
    """Cases that ran on devices of different names (merged shards of several machines, SLURM tasks on
    mixed nodes): a comparison whose module and `none` did so compares the devices as much as the module."""
    if "device_name" not in cases:
        return []
    named = cases[cases["device_name"].notna() & (cases["device_name"].astype(str) != "")]
    names = named["device_name"].value_counts(sort=False)
    if len(names) < 2:
        return []
    lines = [f"- cases ran on devices of different names ({words([f'{name}: {n} cases' for name, n in names.items()])}); "
             "compare modules within a setting, not across devices"]
    for key, group in groups(named):
        for batch, members in group.groupby("batch_size", sort=False):
            if members["device_name"].nunique() > 1:
                lines.append(f"- {group_title(key)}, batch {batch}: its modules and `{BASELINE}` ran on different "
                             f"devices ({words(list(members['device_name'].unique()))}); its overheads are not comparable")
    return lines
