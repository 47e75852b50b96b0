"""The run-directory format: file names, columns, the one case key, and migrations of older runs.

A case is identified by its case key (CASE_KEY): what was built (backbone, attention label and key, the
module's options after defaults are applied, the placement actually used) and the grid point. Every
grouping derives from it: `SETTING` (the key without the attention's identity) is the comparison group a
module shares with its `none` case, across runs the gate matches cases on the whole key, and `case_id`
is a hash of it. A module whose default changes is therefore a new case, not the same one silently.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

SCHEMA_VERSION = 3
"""3: the key's `runtime` (eager, inductor, onnxruntime, ...) replaces `compile` (true: inductor), and
`runtime_build_s` replaces `compile_s`; the runtime columns (differences from eager, graph nodes,
settings) added. 2: `options` holds the resolved options and `placement` the resolved placement (1: as
the suite gave them); compile_graphs, graph_breaks, counted, the paired overhead columns and samples'
`round` added. Older runs are migrated on read."""
META_FILE, CASES_FILE, SAMPLES_FILE = "meta.json", "cases.csv", "samples.csv"
SITES_FILE = "attention_sites.csv"

ATTENTION_IDENTITY = ("attention", "attention_key", "options", "placement")
"""What identifies the attention entry of a case: its label, registry key, resolved options, placement."""
CASE_KEY = (
    "backbone",
    *ATTENTION_IDENTITY,
    "batch_size",
    "resolution",
    "dtype",
    "mode",
    "device",
    "channels_last",
    "runtime",
)
SETTING = tuple(column for column in CASE_KEY if column not in ATTENTION_IDENTITY)
"""A comparison group: cases that differ only in their attention entry. Each module's overhead is taken
over the `none` case of its setting, and such cases are timed together."""
TABLE_SETTING = tuple(column for column in SETTING if column != "batch_size")
"""What one report table covers: a setting over all its batch sizes."""
KEY_DEFAULTS = {"channels_last": False, "runtime": "eager", "options": "", "placement": ""}
"""Key columns that older runs may lack, and the value they had there."""

CASE_COLUMNS = [
    "case_id",
    *CASE_KEY,
    "status",
    "error",
    # complexity (of one eval forward, whatever the mode: see `counted`)
    "params",
    "params_attention",
    "macs",
    "flops",
    "bytes_min",
    "bytes_eager",
    "arithmetic_intensity",
    "macs_attention",
    "flops_attention",
    "bytes_min_attention",
    "bytes_eager_attention",
    "uncounted_ops",
    "formula_ok",
    "counted",
    # latency (statistics derived from samples.csv)
    "latency_ms_median",
    "latency_ms_iqr",
    "latency_ms_p10",
    "latency_ms_p90",
    "latency_ms_ci_low",
    "latency_ms_ci_high",
    "latency_overhead_pct",
    "latency_overhead_ci_low_pct",
    "latency_overhead_ci_high_pct",
    "precision_met",
    "wall_ms_median",
    "repeats",
    "l2_flush",
    "noisy",
    "throughput_ips",
    "graph_ms_median",
    "launch_overhead_ms",
    "graph_error",
    "compile_graphs",
    "graph_breaks",
    "achieved_bandwidth_gbs",
    "bandwidth_fraction",
    # the GPU around the timing (CUDA with NVML)
    "sm_clock_mhz_start",
    "sm_clock_mhz_end",
    "gpu_temp_c_end",
    "gpu_power_w_end",
    "throttle_reasons",
    "throttled",
    # the runtime (attnbench.runtimes): what it built, and its output against eager's
    "runtime_build_s",
    "max_abs_diff",
    "max_rel_diff",
    "graph_nodes",
    "optimized_nodes",
    "runtime_settings",
    # memory
    "peak_mem_mib",
    "peak_mem_reserved_mib",
    # attention modules alone
    "module_latency_ms_median",
    # profile
    "attention_time_share",
    "kernel_count",
    "attention_top_ops",
    "duration_s",
    # where the case ran (not part of the key: the same case on another GPU is the same case)
    "host",
    "device_index",
    "device_name",
    "worker",
]
SAMPLE_COLUMNS = ["case_id", "repeat", "round", "latency_ms", "wall_ms"]
"""`round`: the randomized pass over the comparison group the sample was taken in; a module's samples
pair with its `none`'s of the same round."""
SITE_COLUMNS = [
    "case_id",
    "backbone",
    "attention",
    "path",
    "stage",
    "channels",
    "sites",
    "formula_params",
    "counted_params",
    "ok",
]
"""attention_sites.csv: one row per attention instance of a case (the parameter-formula check); `sites`
is the number of insertion points sharing the instance."""
STATUSES = ("ok", "oom", "error", "skipped", "timeout")

INTEGER_COLUMNS = frozenset({
    "batch_size", "resolution", "params", "params_attention", "macs", "flops", "bytes_min", "bytes_eager",
    "macs_attention", "flops_attention", "bytes_min_attention", "bytes_eager_attention", "repeats",
    "compile_graphs", "graph_breaks", "kernel_count", "repeat", "round", "channels", "sites", "formula_params",
    "counted_params", "sm_clock_mhz_start", "sm_clock_mhz_end", "graph_nodes", "optimized_nodes",
})
NUMBER_COLUMNS = frozenset({
    "arithmetic_intensity", "latency_ms_median", "latency_ms_iqr", "latency_ms_p10", "latency_ms_p90",
    "latency_ms_ci_low", "latency_ms_ci_high", "wall_ms_median", "throughput_ips", "compile_s",
    "achieved_bandwidth_gbs", "bandwidth_fraction", "peak_mem_mib", "peak_mem_reserved_mib",
    "module_latency_ms_median", "attention_time_share", "duration_s", "latency_ms", "wall_ms",
    "latency_overhead_pct", "latency_overhead_ci_low_pct", "latency_overhead_ci_high_pct", "graph_ms_median",
    "launch_overhead_ms", "gpu_temp_c_end", "gpu_power_w_end", "runtime_build_s", "max_abs_diff", "max_rel_diff",
})
FLAG_COLUMNS = frozenset({
    "channels_last", "compile", "formula_ok", "noisy", "l2_flush", "ok", "precision_met", "throttled",
})
FLAG_VALUES = ("true", "false", "1", "0", "1.0", "0.0")
"""What a non-empty value of a column of cases.csv, samples.csv or attention_sites.csv must be (an integer
may be written as 5.0, as pandas writes a column with gaps): the reader refuses anything else, naming
file, line and column, so that a cut-off or edited line never reads as a number."""
REQUIRED_CASE_COLUMNS = ["case_id", *(c for c in CASE_KEY if c not in KEY_DEFAULTS), "status", "error"]
"""A run missing these cannot be read; any other column may be absent (a metric added since) and reads as empty."""


def format_options(options: Iterable[tuple[str, Any]]) -> str:
    """`name=repr;name=repr`, sorted by name: the `options` column and its part of the case key."""
    return ";".join(f"{name}={value!r}" for name, value in sorted(options))


def parse_options(cell: object) -> dict[str, Any]:
    """An `options` cell back into a dict."""
    if not isinstance(cell, str) or not cell:
        return {}
    pairs = (item.split("=", 1) for item in cell.split(";"))
    return {name: ast.literal_eval(value) for name, value in pairs}


def key_value(value: Any) -> str:
    """One spelling per value, whatever pandas read: 1, 1.0 and "1" match, True and "True" match, empty is ""."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def case_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The case key of a row (a CaseSpec's key dict or a cases.csv row), normalised for matching."""
    return tuple(key_value(row.get(column, KEY_DEFAULTS.get(column))) for column in CASE_KEY)


def setting_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The comparison group of a row, normalised: a module's `none` is the `none` row of the same setting."""
    return tuple(key_value(row.get(column, KEY_DEFAULTS.get(column))) for column in SETTING)


def case_id(key: Mapping[str, Any]) -> str:
    """A stable hash of the case key: the same case gives the same id in every run."""
    canonical = json.dumps(dict(zip(CASE_KEY, case_key(key))), sort_keys=True)
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def key_path(key: Mapping[str, Any]) -> str:
    """`backbone/attention/batch/resolution/dtype/mode/device[/channels_last][/runtime]`: the case's name in
    gate patterns and tables (the runtime when it is not eager). The options and placement stay out: the
    label already names what differs."""
    parts = [key_value(key.get(c)) for c in ("backbone", "attention", "batch_size", "resolution", "dtype", "mode", "device")]
    if key_value(key.get("channels_last")) == "True":
        parts.append("channels_last")
    runtime = key_value(key.get("runtime"))
    if runtime not in ("", KEY_DEFAULTS["runtime"]):
        parts.append(runtime)
    return "/".join(parts)
