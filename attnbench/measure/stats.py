"""Statistics derived from raw samples; nothing here touches a clock."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
