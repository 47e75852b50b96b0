"""The order in which cases run: comparison groups (a setting's `none` and its modules), each timed
together so that drift of the machine lands on a module and its baseline alike."""

from __future__ import annotations

from dataclasses import dataclass

from attnbench.config import CaseSpec


@dataclass(frozen=True)
class Group:
    """Cases of one setting (results.schema.SETTING) that are prepared and timed together."""

    cases: tuple[CaseSpec, ...]

    @property
    def backbone(self) -> str:
        return self.cases[0].backbone


def comparison_groups(cases: list[CaseSpec]) -> list[Group]:
    """Cases that differ only in their attention entry, in the order of their first case."""
    groups: dict[tuple, list[CaseSpec]] = {}
    for case in cases:
        groups.setdefault(case.setting, []).append(case)
    return [Group(tuple(members)) for members in groups.values()]


def plan(cases: list[CaseSpec], interleave: bool) -> list[Group]:
    """Comparison groups when a group's cases are timed together, else one case after the other."""
    return comparison_groups(cases) if interleave else [Group((case,)) for case in cases]
