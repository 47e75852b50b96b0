"""Name -> object registries filled by decorators, with close-match suggestions for typos."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from attnbench.errors import UnknownNameError

T = TypeVar("T")


def close_matches(name: str, choices: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, choices, n=n, cutoff=0.5)


def did_you_mean(name: str, choices: list[str]) -> str:
    """`did you mean 'x'? ` for the close matches of `name`, or nothing."""
    hint = close_matches(name, choices)
    return f"did you mean {', '.join(repr(h) for h in hint)}? " if hint else ""


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    return f"unknown {kind} {name!r}: {did_you_mean(name, choices)}accepted: {', '.join(choices)}"


class Registry(Generic[T]):
    """A named mapping that refuses duplicates and explains unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())
