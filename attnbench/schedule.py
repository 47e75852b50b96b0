"""The order in which cases run: comparison groups (a setting's `none` and its modules), each timed
together so that drift of the machine lands on a module and its baseline alike."""

from __future__ import annotations

from dataclasses import dataclass

from attnbench.config import CaseSpec
from attnbench.errors import UsageError


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


@dataclass(frozen=True)
class Shard:
    """The `index`-th (from 1) of `count` deterministic parts of a grid, for schedulers attnbench does not
    drive (Kubernetes indexed jobs, CI matrices): each runs `run --shard i/n` into its own run directory and
    `attnbench merge` joins them. A comparison group never splits: a module and its `none` stay together."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected i/n, e.g. 1/4") from None
        if not 1 <= shard.index <= shard.count:
            raise UsageError(f"--shard {text!r}: i must be between 1 and n, e.g. 1/{max(shard.count, 1)}")
        return shard

    def select(self, cases: list[CaseSpec]) -> list[CaseSpec]:
        """The cases of every comparison group whose position in the grid is index - 1 modulo count, in grid
        order: the same grid gives the same shards on every machine."""
        mine = {
            group.cases[0].setting
            for position, group in enumerate(comparison_groups(cases))
            if position % self.count == self.index - 1
        }
        return [case for case in cases if case.setting in mine]


def case_order(cases: list[CaseSpec], interleave: bool) -> list[str]:
    """Case ids in the order a run plans them (group after group): the order its tables read in."""
    return [case.case_id for group in plan(cases, interleave) for case in group.cases]
