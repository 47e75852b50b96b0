"""The grid's `runtimes` axis as a suite gives it: names checked when the suite loads, so that a runtime
that is not installed is one line naming the extra, before anything runs."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from attnbench.config.toml import Section
from attnbench.errors import ConfigError
from attnbench.registry import unknown_name_message
from attnbench.runtimes.base import DEPLOY_EXTRA, EAGER, RUNTIMES

if TYPE_CHECKING:
    from attnbench.config import SuiteSpec

INDUCTOR = "inductor"
COMPILE_AXIS = {False: EAGER, True: INDUCTOR}
"""The older `compile = [false, true]` axis, which suites and the meta.json of runs written before
runtimes still carry: compile false is eager, true is inductor."""


def parse_runtimes(section: Section, device: str) -> tuple[str, ...]:
    """`runtimes` (default ["eager"]), or the older `compile`. A runtime whose packages come with an extra
    and are missing, or one that cannot run on an explicitly named device, is refused here; under
    `device = "auto"`, or for a runtime outside the extras (TensorRT), its cases are skipped when run."""
    if "compile" in section.data:
        if "runtimes" in section.data:
            raise ConfigError(f"{section.where('compile')}: give `runtimes` only (`compile` is its older form)")
        return tuple(COMPILE_AXIS[value] for value in section.bools("compile"))
    where = section.where("runtimes")
    names = section.distinct("runtimes", section.list_of("runtimes", str, (EAGER,)))
    for name in names:
        if name not in RUNTIMES:
            raise ConfigError(f"{where}: " + unknown_name_message("runtime", name, RUNTIMES.names()))
        spec = RUNTIMES.get(name)
        missing = spec.missing()
        if missing and spec.extra:
            raise ConfigError(f"{where}: runtime {name!r} needs {', '.join(missing)}, not installed: {DEPLOY_EXTRA}")
        if device != "auto" and device not in spec.dtypes:
            raise ConfigError(f"{where}: runtime {name!r} runs on {' and '.join(spec.dtypes)}, not device {device!r}")
    return names


def compile_era_fingerprint(suite: SuiteSpec) -> str | None:
    """The fingerprint `suite` had when the grid's axis was `compile` (runs of results schema 2 recorded
    it), so that resuming such a run from an unchanged suite file is not refused; None when the suite
    uses a runtime the `compile` axis could not name."""
    grid = dict(suite.raw["grid"])
    runtimes = grid.pop("runtimes")
    if not set(runtimes) <= set(COMPILE_AXIS.values()):
        return None
    grid["compile"] = [name == INDUCTOR for name in runtimes]
    return replace(suite, raw={**suite.raw, "grid": grid}).fingerprint
