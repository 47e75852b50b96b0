"""Reading TOML files with typed access to their tables: every error names the file and the key."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from attnbench.errors import ConfigError
from attnbench.registry import unknown_name_message


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the file ({(error.strerror or str(error)).lower()})") from None
    if data.startswith(BYTE_ORDER_MARK):
        raise ConfigError(f"{path}: starts with a byte-order mark; save it as UTF-8 without BOM")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; a TOML file is UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: malformed TOML: {error}") from None


BYTE_ORDER_MARK = b"\xef\xbb\xbf"
"""Editors on Windows may start UTF-8 files with it; tomllib reads it as an invalid statement at 1:1."""


class Section:
    """Typed access to one table of a TOML file; unknown keys are refused with close matches."""

    def __init__(self, data: Any, source: Path | str, prefix: str, allowed: tuple[str, ...]):
        where = f"{source}: [{prefix}]" if prefix else f"{source}:"
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table")
        self.data, self.source, self.prefix = data, source, prefix
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"{self.where(key)}: unknown key; "
                    + unknown_name_message("key", key, list(allowed)).split(": ", 1)[1]
                )

    def where(self, key: str) -> str:
        dotted = f"{self.prefix}.{key}" if self.prefix else key
        return f"{self.source}: {dotted}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default
        return self.check(key, self.data[key], kind)

    def check(self, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):  # TOML has nan and inf; no budget is either
            raise ConfigError(f"{self.where(key)}: expected a finite number, got {value!r}")
        return value

    def positive_int(self, key: str, default: Any = ..., minimum: int = 1) -> int:
        value = self.get(key, int, default)
        if value is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: must be >= {minimum}, got {value}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise ConfigError(f"{self.where(key)}: {value!r} is not accepted; accepted: {', '.join(choices)}")
        return value

    def list_of(self, key: str, kind: type, default: Any = ..., may_be_empty: bool = False) -> tuple[Any, ...]:
        values = self.get(key, list, default)
        if isinstance(values, tuple):
            return values
        if not values and not may_be_empty:
            raise ConfigError(f"{self.where(key)}: must not be empty")
        return tuple(self.check(key, value, kind) for value in values)

    def distinct(self, key: str, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """A grid axis names each value once: a repeated one would plan a case twice."""
        if len(set(values)) != len(values):
            raise ConfigError(f"{self.where(key)}: values must be distinct, got {list(values)}")
        return values

    def bools(self, key: str) -> tuple[bool, ...]:
        """A list of distinct booleans, defaulting to [false]: a grid axis that can be switched on."""
        return self.distinct(key, self.list_of(key, bool, (False,)))
