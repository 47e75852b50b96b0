"""attnbench: what channel and spatial attention modules really cost in CNN backbones.

From Python: build_model, complexity, latency, run_suite, load_run, compare_runs, write_report (see the
README's "From Python"). They load on first use, so that `import attnbench` does not import torch.
"""

from __future__ import annotations

from attnbench.errors import (
    AttnbenchError,
    ConfigError,
    DeviceError,
    GateError,
    OptionError,
    ResultsError,
    UnknownNameError,
    UsageError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (5 ms); type checkers read it as True
if TYPE_CHECKING:
    from typing import Any

    from attnbench.api import (
        Measurement,
        ModelInfo,
        Run,
        build_model,
        compare_runs,
        complexity,
        create_attention,
        latency,
        list_attention,
        load_run,
        run_suite,
        write_report,
    )

__version__ = "0.1.0"

# `measure` and `report` would be the obvious names for latency() and write_report(), but attnbench.measure and
# attnbench.report are subpackages: importing one sets the package attribute of that name, so a function of
# that name would be replaced by the module, or would break `import attnbench.measure.timing as timing`.
__all__ = [
    "AttnbenchError",
    "ConfigError",
    "DeviceError",
    "GateError",
    "Measurement",
    "ModelInfo",
    "OptionError",
    "ResultsError",
    "Run",
    "UnknownNameError",
    "UsageError",
    "build_model",
    "compare_runs",
    "complexity",
    "create_attention",
    "latency",
    "list_attention",
    "load_run",
    "run_suite",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """The API's names, imported from attnbench.api on first use (the errors are here already)."""
    if name in __all__:
        from attnbench import api

        value = getattr(api, name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module 'attnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
