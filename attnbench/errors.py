"""User-facing errors: each becomes one line on stderr and exit code 2 (asv's UserError idea)."""


class AttnbenchError(Exception):
    """An error the user can fix; the CLI prints it as one line, without a traceback."""

    exit_code = 2


class ConfigError(AttnbenchError):
    """A malformed or invalid attnbench.toml or suite file."""


class UnknownNameError(AttnbenchError):
    """A name that is not in a registry (attention key, backbone, suite, metric, ...)."""


class OptionError(AttnbenchError):
    """Options that a module or backbone cannot be built with."""


class ResultsError(AttnbenchError):
    """A results path or run directory that cannot be read or written."""


class DeviceError(AttnbenchError):
    """A device that is not available here, or a combination it cannot run."""


class UsageError(AttnbenchError):
    """Arguments that do not fit together, of a command or of a call from Python (attnbench.api)."""


class GateError(AttnbenchError):
    """Two runs that cannot be compared: a missing path, no common case, an environment refused."""
