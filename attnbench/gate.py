"""Statistical comparison of two runs: is a case really slower, or is the runner just noisy?

A case is a regression only when every check agrees (asv's rule, tightened): the ratio of medians
exceeds 1 + max_slowdown with 80% bootstrap confidence, a Mann-Whitney U test on the raw samples
rejects "same distribution" at alpha, and the bootstrap (1 - alpha) interval of the ratio excludes 1.
A threshold on the point estimate, even with the U test, flags a real 3% slowdown under a 5%
threshold in 12-16% of trials (5% noise, 30 samples); significance alone flags slowdowns too small to
matter.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from attnbench.config import GateConfig, GateThresholds
from attnbench.errors import GateError
from attnbench.measure.stats import paired_ratios, per_round
from attnbench.modules import BASELINE
from attnbench.results import (
    CASE_KEY, SAMPLE_COLUMNS, Run, case_key, find_runs, key_path, key_value, read_meta, read_run, setting_key,
)

ENV_FIELDS = ("device_name", "torch", "cuda", "cudnn", "threads")
"""meta.json fields that change timings without changing any case; a difference is a warning."""
SAMPLE_METRICS = tuple(column for column in SAMPLE_COLUMNS if column not in ("case_id", "repeat", "round"))
BOOTSTRAP_RESAMPLES = 2000
THRESHOLD_CONFIDENCE = 0.8
"""How sure the bootstrap must be that the ratio is beyond the threshold: 0.5 is the point estimate
(flags 12% of true 3% slowdowns under a 5% threshold), 0.9 misses 4% of true 10% slowdowns."""


class Verdict(str, Enum):
    REGRESSION = "regression"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    MISSING = "missing"
    NEW = "new"
    IMPROVEMENT = "improvement"
    UNCHANGED = "unchanged"
    REFERENCE = "reference"
    """`none` in a relative comparison: what the other cases are divided by, not gated itself."""


@dataclass(frozen=True)
class RatioStats:
    """current / baseline for one case: ratio of medians, bootstrap bounds, the U test's p-value."""

    ratio: float
    ci_low: float
    ci_high: float
    """The bootstrap (1 - alpha) interval of the ratio."""
    likely_low: float
    likely_high: float
    """One-sided THRESHOLD_CONFIDENCE bounds: the ratio is above likely_low with that confidence."""
    p_value: float

    def inverted(self) -> RatioStats:
        """baseline / current: an improvement is what would be a regression with the runs swapped."""
        return RatioStats(
            1 / self.ratio, 1 / self.ci_high, 1 / self.ci_low, 1 / self.likely_high, 1 / self.likely_low,
            self.p_value,
        )


class Check(Protocol):
    """One condition of a regression; returns a message when the case is slower by it, else None."""

    def fails(self, stats: RatioStats) -> str | None: ...


@dataclass(frozen=True)
class RatioCheck:
    """The slowdown is beyond the threshold with THRESHOLD_CONFIDENCE, not merely in the point estimate."""

    max_slowdown: float

    def fails(self, stats: RatioStats) -> str | None:
        if stats.likely_low > 1 + self.max_slowdown:
            return (
                f"{stats.ratio - 1:+.1%} (>= {stats.likely_low - 1:+.1%} at {THRESHOLD_CONFIDENCE:.0%}) "
                f"> {self.max_slowdown:.1%}"
            )
        return None


@dataclass(frozen=True)
class SignificanceCheck:
    alpha: float

    def fails(self, stats: RatioStats) -> str | None:
        if stats.p_value < self.alpha:
            return f"p={stats.p_value:.2g} < {self.alpha:g}"
        return None


@dataclass(frozen=True)
class IntervalCheck:
    """The bootstrap interval of the ratio lies wholly above 1: the slowdown is not a resampling accident."""

    def fails(self, stats: RatioStats) -> str | None:
        if stats.ci_low > 1:
            return f"CI [{stats.ci_low:.3f}, {stats.ci_high:.3f}] > 1"
        return None


def checks_for(thresholds: GateThresholds) -> tuple[Check, ...]:
    return (RatioCheck(thresholds.max_slowdown), SignificanceCheck(thresholds.alpha), IntervalCheck())


def ratio_stats(
    baseline: Sequence[float], current: Sequence[float], alpha: float, seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> RatioStats:
    """Ratio of medians with seeded percentile-bootstrap bounds, and a two-sided U test."""
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, size=(resamples, base.size)), axis=1)
    cur_medians = np.median(rng.choice(cur, size=(resamples, cur.size)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(cur) / np.median(base))
        bounds = np.quantile(
            cur_medians / base_medians,
            [alpha / 2, 1 - alpha / 2, 1 - THRESHOLD_CONFIDENCE, THRESHOLD_CONFIDENCE],
        )
    return RatioStats(ratio, *(float(bound) for bound in bounds), u_test(cur, base))


def u_test(current: np.ndarray, baseline: np.ndarray) -> float:
    """The two-sided Mann-Whitney U test's p-value."""
    from scipy.stats import mannwhitneyu  # here, not at the top: importing scipy.stats costs every command 0.7 s

    return float(mannwhitneyu(current, baseline, alternative="two-sided").pvalue)


def min_p_value(n_baseline: int, n_current: int) -> float:
    """The smallest p-value the U test can give at these sample counts (fully separated samples)."""
    return u_test(np.arange(n_current), np.arange(n_baseline) + n_current)


def classify(stats: RatioStats, thresholds: GateThresholds) -> tuple[Verdict, str]:
    """Regression when every check fires; improvement when every check fires with the runs swapped."""
    checks = checks_for(thresholds)
    for verdict, view, prefix in (
        (Verdict.REGRESSION, stats, ""), (Verdict.IMPROVEMENT, stats.inverted(), "baseline slower: ")
    ):
        messages = [check.fails(view) for check in checks]
        if all(messages):
            return verdict, prefix + "; ".join(messages)
    if stats.ci_high > 1 + thresholds.max_slowdown:
        # The data cannot rule out a slowdown the size of the threshold: say so rather than pass quietly.
        resolvable = (stats.ci_high - stats.ci_low) / 2
        return Verdict.INCONCLUSIVE, (
            f"a slowdown of {thresholds.max_slowdown:.1%} cannot be ruled out (interval up to {stats.ci_high - 1:+.1%}); "
            f"this noise resolves changes of about ±{resolvable:.1%}"
        )
    return Verdict.UNCHANGED, ""


@dataclass(frozen=True)
class CaseComparison:
    """One row of a comparison: the case, its verdict, and the evidence behind it."""

    key: dict[str, Any] = field(hash=False)
    path: str
    verdict: Verdict
    thresholds: GateThresholds
    baseline_median: float | None = None
    current_median: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    stats: RatioStats | None = None
    failed_side: str | None = None
    """"baseline" or "current" for a failed case: the first run whose case did not measure."""
    relative: bool = False
    """Compared as the module's time over its `none` round by round, rather than as absolute times."""
    underpowered: bool = False
    """Too few samples for the U test to ever reach alpha: such a case cannot be flagged."""
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    baseline: Run
    current: Run
    metric: str
    cases: tuple[CaseComparison, ...]
    warnings: tuple[str, ...]

    @property
    def quantity(self) -> str:
        """What the medians of a comparison are: times in the metric's unit, or ratios to `none`."""
        return self.metric.replace(" relative to ", " / ")

    def of(self, verdict: Verdict) -> list[CaseComparison]:
        return [case for case in self.cases if case.verdict is verdict]

    @property
    def gate_failures(self) -> list[CaseComparison]:
        """Regressions, and cases that ran in the baseline but fail now: a crash hides any slowdown."""
        return [
            case for case in self.cases
            if case.verdict is Verdict.REGRESSION
            or (case.verdict is Verdict.FAILED and case.failed_side == "current")
        ]

    @property
    def passed(self) -> bool:
        return not self.gate_failures

    def passes(self, fail_on_inconclusive: bool = False) -> bool:
        """The gate's outcome; with `fail_on_inconclusive`, a case noise left undecided fails it too."""
        return self.passed and not (fail_on_inconclusive and self.of(Verdict.INCONCLUSIVE))


def _keyed(run: Run) -> dict[tuple[str, ...], pd.Series]:
    """Rows by case key; a case measured twice in one run keeps its last row (a resumed case)."""
    return {case_key(row): row for _, row in run.cases.iterrows()}


def _baselines(run: Run) -> dict[tuple[str, ...], pd.Series]:
    """The `none` row of each setting."""
    return {setting_key(row): row for _, row in run.cases.iterrows() if row["attention"] == BASELINE}


def environment_warnings(baseline: Run, current: Run) -> list[str]:
    warnings = []
    for name in ENV_FIELDS:
        before, after = baseline.meta.get(name), current.meta.get(name)
        if before != after:
            warnings.append(f"environment differs: {name} {before!r} in the baseline, {after!r} now")
    return warnings


def resolve_run(path: Path, role: str, suite: str | None = None) -> Run:
    """A run directory, or a folder of runs: its latest run of `suite` when it holds one, else its latest
    run (which compare_runs then refuses as a run of another suite)."""
    path = Path(path)
    if not path.exists():
        raise GateError(f"{role} {path} does not exist; accepted: a run directory or a folder of runs")
    runs = find_runs(path)
    if not runs:
        raise GateError(f"{role} {path} holds no run directory (no meta.json in it or its subfolders)")
    of_suite = [run for run in runs if suite is not None and read_meta(run).get("suite", {}).get("name") == suite]
    return read_run((of_suite or runs)[-1])


def suite_mismatch(baseline: Run, current: Run) -> str | None:
    """Why two runs are of different suites, or None."""
    if baseline.suite_name == current.suite_name:
        return None
    return (
        f"the baseline run {baseline.run_id} is of suite {baseline.suite_name!r}, the current run "
        f"{current.run_id} of suite {current.suite_name!r}"
    )


def compare_runs(
    baseline: Run,
    current: Run,
    gate: GateConfig = GateConfig(),
    metric: str = "latency_ms",
    strict_env: bool = False,
    seed: int = 0,
    absolute: bool = False,
    across_suites: bool = False,
) -> Comparison:
    """Matches the cases of two runs on their case key and classifies each; raises GateError on misuse.

    By default a module is compared relative to the `none` case of its setting in its own run: its
    samples divided, round by round, by the `none` samples of the same round (runs timed before pairing:
    by the `none` median). The gate then asks whether a module got slower relative to its backbone,
    which a uniformly slower machine does not change; the `none` cases are the reference, not gated, and
    their own drift is reported as a warning. A case whose setting has no finished `none` in either run
    is compared absolutely, and a warning says so. `absolute` compares every case's raw times, for
    tracking torch or hardware upgrades on a dedicated machine.

    Runs of different suites are refused unless `across_suites` (then it is the first warning), and a run
    is never compared with itself: it would always pass.
    """
    warnings = _comparable(baseline, current, metric, strict_env, across_suites)
    before, after = _keyed(baseline), _keyed(current)
    references = (_baselines(baseline), _baselines(current))
    if not set(before) & set(after):
        raise GateError(
            f"no common cases between {baseline.path} and {current.path}; cases match on {', '.join(CASE_KEY)}"
        )
    sides = (Side(baseline, metric), Side(current, metric))
    suite = current.suite_name
    cases = []
    for key in [*before, *(k for k in after if k not in before)]:
        named = dict(zip(CASE_KEY, key))
        path = key_path(named)
        setting = setting_key(named)
        reference = None if absolute else (references[0].get(setting), references[1].get(setting))
        if reference is not None and not all(_finished(row) for row in reference):
            reference = None
        cases.append(_compare_case(
            named, path, gate.thresholds_for(suite, path), before.get(key), after.get(key), sides,
            seed + zlib.crc32(path.encode()), reference,
        ))
    warnings += _relative_warnings(cases, sides, references, absolute)
    underpowered = [case.path for case in cases if case.underpowered]
    if underpowered:
        warnings.append(
            f"{len(underpowered)} case(s) have too few samples to ever be significant at their alpha "
            f"(e.g. {underpowered[0]}); raise min_repeats"
        )
    label = metric if absolute else f"{metric} relative to {BASELINE}"
    return Comparison(baseline, current, label, tuple(cases), tuple(warnings))


def check_gateable(run: Run, role: str, metric: str) -> None:
    """Refuses a metric the gate cannot compare, or a run without samples of it (a complexity-only suite):
    `run --baseline` asks before it measures anything, the comparison again for the run it measured."""
    if metric not in SAMPLE_METRICS:
        raise GateError(f"unknown metric {metric!r}; accepted: {', '.join(SAMPLE_METRICS)}")
    if (run.cases["status"] == "ok").any() and run.samples[metric].notna().sum() == 0:
        raise GateError(f"{role} {run.path} has no {metric} samples; run a suite with the latency metric")


def _comparable(baseline: Run, current: Run, metric: str, strict_env: bool, across_suites: bool) -> list[str]:
    """Refuses two runs that cannot be compared (GateError); returns the warnings of those that can."""
    environment = environment_warnings(baseline, current)
    if environment and strict_env:
        raise GateError(f"{environment[0]} (--strict-env); rerun the baseline on this environment")
    for role, run in (("baseline", baseline), ("current", current)):
        check_gateable(run, role, metric)
    if baseline.run_id == current.run_id:
        raise GateError(
            f"the baseline and the current run are the same run {current.run_id}; compare a run with an earlier one"
        )
    mismatch = suite_mismatch(baseline, current)
    if mismatch and not across_suites:
        raise GateError(
            f"{mismatch}; compare runs of one suite, or pass --force (compare_runs(force=True) in Python) "
            "to compare their common cases"
        )
    return [*([mismatch] if mismatch else []), *baseline.warnings, *current.warnings, *environment]


def _finished(row: pd.Series | None) -> bool:
    return row is not None and row["status"] == "ok"


class Side:
    """One run's samples of the compared metric, by case id, with their rounds where the run has them."""

    def __init__(self, run: Run, metric: str):
        samples = run.samples.dropna(subset=[metric])
        self.values = {case_id: frame for case_id, frame in samples.groupby("case_id", sort=False)}
        self.metric = metric

    def of(self, row: pd.Series) -> np.ndarray:
        frame = self.values.get(row["case_id"])
        return np.empty(0) if frame is None else frame[self.metric].to_numpy(dtype=float)

    def relative(self, row: pd.Series, reference: pd.Series) -> np.ndarray:
        """The case's samples over its `none`'s: per round where both carry rounds, else over its median."""
        case, base = self.values.get(row["case_id"]), self.values.get(reference["case_id"])
        if case is None or base is None:
            return np.empty(0)
        if case["round"].notna().all() and base["round"].notna().all():
            return paired_ratios(per_round(case[self.metric], case["round"]), per_round(base[self.metric], base["round"]))
        return case[self.metric].to_numpy(dtype=float) / float(np.median(base[self.metric]))


def _relative_warnings(
    cases: list[CaseComparison], sides: tuple[Side, Side], references: tuple[dict, dict], absolute: bool
) -> list[str]:
    """What a relative comparison divides out and where it could not: the drift of `none` itself."""
    if absolute:
        return []
    warnings = []
    fallen_back = [case.path for case in cases if not case.relative and case.stats is not None]
    if fallen_back:
        warnings.append(
            f"{len(fallen_back)} case(s) compared as absolute times: their setting has no finished `{BASELINE}` in "
            f"both runs (e.g. {fallen_back[0]})"
        )
    drifts = []
    for setting, before in references[0].items():
        after = references[1].get(setting)
        if _finished(before) and _finished(after):
            old, new = sides[0].of(before), sides[1].of(after)
            if old.size and new.size:
                drifts.append(float(np.median(new) / np.median(old)) - 1)
    if drifts and max(abs(d) for d in drifts) > 0.02:
        warnings.append(
            f"the plain backbone itself moved between the runs: `{BASELINE}` median {min(drifts):+.1%} to "
            f"{max(drifts):+.1%} over {len(drifts)} setting(s); relative verdicts divide this drift out "
            "(--absolute gates it)"
        )
    return warnings


def _compare_case(
    key: dict[str, Any], path: str, thresholds: GateThresholds, before: pd.Series | None,
    after: pd.Series | None, sides: tuple[Side, Side], seed: int,
    reference: tuple[pd.Series, pd.Series] | None = None,
) -> CaseComparison:
    case = CaseComparison(key, path, Verdict.UNCHANGED, thresholds)
    if reference is not None and key.get("attention") == BASELINE:
        return replace(case, verdict=Verdict.REFERENCE, note="the reference of the relative comparison: not gated")
    if after is None:
        return replace(case, verdict=Verdict.MISSING, note="in the baseline only")
    if before is None:
        return replace(case, verdict=Verdict.NEW, note="in the current run only")
    for side, row in (("baseline", before), ("current", after)):
        if row["status"] != "ok":
            error = key_value(row["error"])
            note = f"{side} {row['status']}" + (f": {error}" if error else "")
            return replace(case, verdict=Verdict.FAILED, failed_side=side, note=note)
    if reference is None:
        base, cur = sides[0].of(before), sides[1].of(after)
    else:
        base, cur = sides[0].relative(before, reference[0]), sides[1].relative(after, reference[1])
    for side, values in (("baseline", base), ("current", cur)):
        if values.size == 0:
            return replace(case, verdict=Verdict.FAILED, failed_side=side, note=f"{side} has no {sides[0].metric} samples")
    stats = ratio_stats(base, cur, thresholds.alpha, seed)
    verdict, note = classify(stats, thresholds)
    underpowered = min_p_value(base.size, cur.size) >= thresholds.alpha
    if underpowered:
        note = f"too few samples ({base.size} vs {cur.size}) for alpha {thresholds.alpha:g}"
    return replace(
        case, verdict=verdict, note=note, stats=stats, n_baseline=base.size, n_current=cur.size,
        underpowered=underpowered, relative=reference is not None,
        baseline_median=float(np.median(base)), current_median=float(np.median(cur)),
    )
