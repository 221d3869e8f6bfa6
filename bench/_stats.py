"""Statistics of the bench scripts: one formula, so tables set side by side compare.

`percentile` is the **nearest-rank** percentile: the value at 1-based rank ceil(p/100 · n) of
the sorted values, i.e. the smallest measured value with at least p % of the values at or
below it. No interpolation: every figure in a table is a measured value.

    >>> percentile([15, 20, 35, 40, 50], 30), percentile([15, 20, 35, 40, 50], 100)
    (20, 50)
    >>> percentile(list(range(1, 101)), 50), percentile(list(range(1, 101)), 99)
    (50, 99)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank p-th percentile (0 < p <= 100) of values; ValueError when empty."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile p must be in (0, 100], got {p!r}")
    ordered = sorted(values)
    # round() first: 7 / 100 * 100 is 7.000000000000001, whose ceil would skip a rank
    rank = math.ceil(round(p / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def median_range(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of values: what the tables print as `median (min–max)`."""
    return statistics.median(values), min(values), max(values)
