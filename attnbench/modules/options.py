"""The types of a module's options, and option values checked against them.

Suite files and `--option` give values as TOML reads them (bool, int, float, str). Unchecked, a value of
the wrong type reaches the constructor, where `bias = "false"` is a true string and `reduction = "8"`
fails deep inside torch; so every value is checked against the type the constructor declares, and an
int where a float is wanted is the only conversion (it is exact).
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Literal, Union

from torch import nn

from attnbench.errors import OptionError

_REFUSED = object()


def constructor_options(cls: type[nn.Module]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each option's default and type, from the constructor after `channels`: its annotation, else the
    type of its default (an option without either takes any value)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, channels
    hints = typing.get_type_hints(cls.__init__)
    defaults, kinds = {}, {}
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty:
            continue
        defaults[parameter.name] = parameter.default
        default_type = type(parameter.default) if parameter.default is not None else Any
        kinds[parameter.name] = hints.get(parameter.name, default_type)
    return defaults, kinds


def convert(expected: Any, value: Any) -> Any:
    """`value` as an option of type `expected` takes it, or _REFUSED."""
    origin = typing.get_origin(expected)
    if expected is Any:
        return value
    if origin is Literal:
        return value if any(type(value) is type(c) and value == c for c in typing.get_args(expected)) else _REFUSED
    if origin in (Union, types.UnionType):
        for member in typing.get_args(expected):
            converted = convert(member, value)
            if converted is not _REFUSED:
                return converted
        return _REFUSED
    if expected is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if number else _REFUSED
    if expected is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _REFUSED
    if isinstance(expected, type):
        return value if isinstance(value, expected) else _REFUSED
    return value  # an annotation no value can be checked against here (a protocol): the constructor decides


def describe(expected: Any) -> str:
    """The accepted values, as a suite file writes them."""
    origin = typing.get_origin(expected)
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(expected))
    if origin in (Union, types.UnionType):
        # None is a default only: TOML has no null to write it with.
        return " or ".join(describe(m) for m in typing.get_args(expected) if m is not type(None))
    names = {bool: "bool (true or false)", int: "int", float: "float", str: "str"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def check_option(key: str, name: str, value: Any, expected: Any) -> Any:
    """The value an option of module `key` takes, converted where exact; OptionError naming the option,
    the value and the accepted type otherwise."""
    converted = convert(expected, value)
    if converted is _REFUSED:
        raise OptionError(
            f"attention {key!r}: option {name}: got {type(value).__name__} {value!r}; accepted: {describe(expected)}"
        )
    return converted
