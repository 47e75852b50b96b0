import pytest

from attnbench.measure.stats import bootstrap_median_ci, summarize


def test_summary_of_fixed_samples():
    stats = summarize([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert stats["latency_ms_median"] == 5.5
    assert stats["latency_ms_iqr"] == pytest.approx(7.75 - 3.25)
    assert stats["latency_ms_p10"] == pytest.approx(1.9)
    assert stats["latency_ms_p90"] == pytest.approx(9.1)
    assert stats["repeats"] == 10
    assert stats["noisy"] is True
    assert stats["latency_ms_ci_low"] <= 5.5 <= stats["latency_ms_ci_high"]


def test_tight_samples_are_not_noisy():
    stats = summarize([10.0, 10.1, 9.9, 10.05, 9.95])
    assert stats["noisy"] is False


def test_bootstrap_is_seeded_and_brackets_median():
    samples = [5.0, 5.2, 4.9, 5.1, 7.0, 5.0, 5.05]
    assert bootstrap_median_ci(samples) == bootstrap_median_ci(samples)
    low, high = bootstrap_median_ci(samples)
    assert low <= 5.05 <= high


def test_single_sample_and_empty():
    assert summarize([3.0])["latency_ms_ci_low"] == 3.0
    with pytest.raises(ValueError):
        summarize([])
