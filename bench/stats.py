"""Pure statistics and formatting: percentiles, summaries over rounds, ratios.

Kept free of I/O so that tests/unit/test_bench_stats.py can pin them down.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(samples: Sequence[float], pct: float) -> float:
    """The pct-th percentile with linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """One figure over repeated rounds: the median and the range, so noise stays visible."""

    median: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """The latency percentiles every end-to-end and endpoint figure reports."""
    return {
        "p50": percentile(samples_ms, 50),
        "p90": percentile(samples_ms, 90),
        "p99": percentile(samples_ms, 99),
        "min": min(samples_ms),
        "max": max(samples_ms),
        "n": len(samples_ms),
    }


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def format_ratio(value: float | None) -> str:
    """1.234 -> 'x1.23', 12.6 -> 'x13', None -> '-': two significant figures are all the noise allows."""
    if value is None or math.isnan(value):
        return "-"
    return f"x{value:.0f}" if value >= 10 else f"x{value:.2f}"


def format_number(value: float | None) -> str:
    """Short, width-stable numbers for the table: 0.734, 12.3, 4410."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_spread(figure: Spread | None) -> str:
    """'24.0 [22.1-31.5]': the median, then the range over rounds."""
    if figure is None:
        return "-"
    if figure.n == 1 or figure.low == figure.high:
        return format_number(figure.median)
    return f"{format_number(figure.median)} [{format_number(figure.low)}-{format_number(figure.high)}]"
