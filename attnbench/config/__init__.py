"""What a run is asked to do: project configuration (attnbench.toml), suite files and their grids, as
frozen specs validated with one-line errors naming file and key."""

from attnbench.config.project import (
    CONFIG_FILENAME,
    GateConfig,
    GateOverride,
    GateThresholds,
    ProjectConfig,
    SlurmConfig,
    find_config,
    import_plugins,
    load_project,
    parse_alpha,
    parse_fraction,
    parse_timing,
)
from attnbench.config.specs import (
    CPU_DTYPES,
    DEVICES,
    DTYPES,
    L2_FLUSH,
    MODES,
    AttentionEntry,
    CaseSpec,
    GridSpec,
    SuiteSpec,
    TimingSpec,
)
from attnbench.config.suites import (
    BUILT_IN_SUITES,
    attention_entry,
    check_dtypes_on_device,
    default_label,
    expand_grid,
    filter_suite,
    list_suites,
    load_suite,
    make_case,
    metric_names,
    parse_option,
    parse_suite,
    resolve_suite_path,
    suite_files,
    suite_to_dict,
)
from attnbench.config.toml import read_toml

__all__ = [
    "BUILT_IN_SUITES", "CONFIG_FILENAME", "CPU_DTYPES", "DEVICES", "DTYPES", "L2_FLUSH", "MODES",
    "AttentionEntry", "CaseSpec", "GateConfig", "GateOverride", "GateThresholds", "GridSpec", "ProjectConfig",
    "SlurmConfig", "SuiteSpec", "TimingSpec",
    "attention_entry", "check_dtypes_on_device", "default_label", "expand_grid", "filter_suite", "find_config",
    "import_plugins", "list_suites", "load_project", "load_suite", "make_case", "metric_names", "parse_alpha",
    "parse_fraction", "parse_option", "parse_suite", "parse_timing", "read_toml", "resolve_suite_path",
    "suite_files", "suite_to_dict",
]
