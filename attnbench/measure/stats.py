"""Statistics derived from raw samples; nothing here touches a clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import bdtr  # binomial CDF; scipy.stats would cost 0.7 s more to import

NOISY_IQR_FRACTION = 0.10
"""A case whose IQR exceeds this fraction of its median is flagged as noisy."""


def bootstrap_median_ci(
    samples: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median; seeded so that reports are reproducible."""
    values = np.asarray(samples, dtype=float)
    if len(values) < 2:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(medians, [tail, 1 - tail])
    return float(low), float(high)


def summarize(samples: Sequence[float], prefix: str = "latency_ms") -> dict[str, float | int | bool]:
    """Median, IQR, p10, p90 and a bootstrap 95% CI of the median, in `prefix`'s unit."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    p10, q1, median, q3, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    ci_low, ci_high = bootstrap_median_ci(values)
    iqr = q3 - q1
    return {
        f"{prefix}_median": float(median),
        f"{prefix}_iqr": float(iqr),
        f"{prefix}_p10": float(p10),
        f"{prefix}_p90": float(p90),
        f"{prefix}_ci_low": ci_low,
        f"{prefix}_ci_high": ci_high,
        "repeats": int(values.size),
        "noisy": bool(median > 0 and iqr / median > NOISY_IQR_FRACTION),
    }


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median: the order statistics X_(j) and X_(n-1-j), j the
    binomial(n, 1/2) quantile at (1 - confidence) / 2. Exact coverage for any continuous distribution,
    no resampling and nothing random: the same samples give the same interval in every report."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = ordered.size
    if n == 0:
        raise ValueError("no values for an interval")
    below = int(np.count_nonzero(bdtr(np.arange(n), n, 0.5) <= (1 - confidence) / 2))
    j = max(0, below - 1)  # the largest j with P(X <= j) <= (1 - confidence) / 2
    return float(ordered[j]), float(ordered[n - 1 - j])


Rounds = tuple[np.ndarray, np.ndarray]
"""(round indices, one value per round), indices ascending."""


def relative_half_width(samples: Sequence[float]) -> float:
    """Half the width of the median's distribution-free interval, in % of the median: the precision of a
    case timed without a `none` to pair with."""
    low, high = median_ci(samples)
    return (high - low) / 2 / float(np.median(samples)) * 100


def per_round(values: Sequence[float], rounds: Sequence[int]) -> Rounds:
    """A case's samples reduced to one value per round: the mean of its calls in that round's turn."""
    index = np.asarray(rounds, dtype=np.int64)
    taken = np.asarray(values, dtype=float)
    if index.size == 0:
        return index, taken
    counts = np.bincount(index)
    present = np.flatnonzero(counts)
    return present, np.bincount(index, weights=taken)[present] / counts[present]


def paired_ratios(module: Rounds, baseline: Rounds) -> np.ndarray:
    """module / baseline in every round both were timed in: the machine's drift cancels within a round."""
    common, in_module, in_baseline = np.intersect1d(module[0], baseline[0], return_indices=True)
    return module[1][in_module] / baseline[1][in_baseline]


@dataclass(frozen=True)
class Overhead:
    """A module's latency over its `none`, in %, from the rounds they were timed in together."""

    pct: float
    ci_low_pct: float
    ci_high_pct: float
    pairs: int

    @property
    def half_width(self) -> float:
        """Half the interval's width, in points: the precision a suite's target is met against."""
        return (self.ci_high_pct - self.ci_low_pct) / 2


def paired_overhead(ratios: np.ndarray, confidence: float = 0.95) -> Overhead | None:
    """The median of the per-round ratios and its distribution-free interval, as % over `none`."""
    if ratios.size == 0:
        return None
    low, high = median_ci(ratios, confidence)
    return Overhead((float(np.median(ratios)) - 1) * 100, (low - 1) * 100, (high - 1) * 100, int(ratios.size))
