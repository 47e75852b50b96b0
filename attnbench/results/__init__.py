"""The run directory: meta.json, cases.csv (one row per case), samples.csv (raw timings), the attention
sites; its format and case key (schema), writing (append-only) and reading (with migrations)."""

from attnbench.results.reader import PROCESS_GONE, Run, find_runs, is_run_dir, migrate_cases, read_meta, read_run
from attnbench.results.schema import (
    ATTENTION_IDENTITY,
    CASE_COLUMNS,
    CASE_KEY,
    CASES_FILE,
    META_FILE,
    REQUIRED_CASE_COLUMNS,
    SAMPLE_COLUMNS,
    SAMPLES_FILE,
    SCHEMA_VERSION,
    SETTING,
    SITE_COLUMNS,
    SITES_FILE,
    STATUSES,
    TABLE_SETTING,
    case_id,
    case_key,
    format_options,
    key_path,
    key_value,
    parse_options,
    setting_key,
)
from attnbench.results.writer import RunWriter, atomic_write_text, new_run_id, utc_now

__all__ = [
    "ATTENTION_IDENTITY", "CASE_COLUMNS", "CASE_KEY", "CASES_FILE", "META_FILE", "PROCESS_GONE",
    "REQUIRED_CASE_COLUMNS", "SAMPLE_COLUMNS", "SAMPLES_FILE", "SCHEMA_VERSION", "SETTING", "SITE_COLUMNS",
    "SITES_FILE", "STATUSES", "TABLE_SETTING", "Run", "RunWriter", "atomic_write_text", "case_id", "case_key",
    "find_runs", "format_options", "is_run_dir", "key_path", "key_value", "migrate_cases", "new_run_id",
    "parse_options", "read_meta", "read_run", "setting_key", "utc_now",
]
