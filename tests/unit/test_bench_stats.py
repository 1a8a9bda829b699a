"""The benchmark's pure helpers: percentiles, spreads over rounds, ratios and their formatting
(the table built from them: test_bench_report.py)."""

from __future__ import annotations

import math

import pytest

from bench.stats import format_ratio, format_spread, latency_summary, percentile, ratio, spread


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]  # unordered on purpose
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert percentile(samples, 50) == 2.5
    assert percentile(samples, 90) == pytest.approx(3.7)


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([7.5], 99) == 7.5


@pytest.mark.parametrize(("samples", "pct"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_what_has_no_answer(samples: list[float], pct: float) -> None:
    with pytest.raises(ValueError):
        percentile(samples, pct)


def test_latency_summary_reports_the_three_percentiles_and_extremes() -> None:
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p99"] == pytest.approx(99.01)
    assert (summary["min"], summary["max"], summary["n"]) == (1.0, 100.0, 100)


def test_spread_is_median_and_range() -> None:
    figure = spread([30.0, 10.0, 20.0])
    assert (figure.median, figure.low, figure.high, figure.n) == (20.0, 10.0, 30.0, 3)


def test_ratio_is_none_without_a_usable_reference() -> None:
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(None, 10.0) is None
    assert ratio(30.0, None) is None
    assert ratio(30.0, 0.0) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (math.nan, "-"), (0.123, "x0.12"), (1.0, "x1.00"), (2.345, "x2.35"), (12.6, "x13"), (150.0, "x150")],
)
def test_format_ratio(value: float | None, text: str) -> None:
    assert format_ratio(value) == text


def test_format_spread_shows_the_range_only_when_there_is_one() -> None:
    assert format_spread(None) == "-"
    assert format_spread(spread([24.04])) == "24.0"
    assert format_spread(spread([22.1, 24.0, 31.5])) == "24.0 [22.1-31.5]"
    assert format_spread(spread([1500.0, 4410.0, 4800.0])) == "4410 [1500-4800]"
