"""HdrHistogram settings and read-outs shared by the Locust plugin and the verdict.

Values are microseconds from 1 µs to one hour with 3 significant digits: any
percentile is within 0.1% of the recorded value, at a fixed ~100 KB per
histogram whatever the request count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new() -> HdrHistogram:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def decode(text: str | None) -> HdrHistogram:
    """A histogram from its compressed base64 form (``HdrHistogram.encode``)."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram.decode(text.encode("ascii")) if text else new()


def summary(h: HdrHistogram) -> dict[str, float]:
    """Percentiles, min, max and mean in milliseconds; empty when nothing was recorded."""
    if h.get_total_count() == 0:
        return {}
    out = {f"p{format(q, 'g')}": h.get_value_at_percentile(q) / 1000.0 for q in PERCENTILES}
    out["min"] = h.get_min_value() / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    out["avg"] = h.get_mean_value() / 1000.0
    return out


def value_at(h: HdrHistogram, metric: str) -> float | None:
    """``p95`` / ``p99.9`` / ``min`` / ``max`` / ``avg`` in milliseconds."""
    if h.get_total_count() == 0:
        return None
    if metric.startswith("p"):
        return h.get_value_at_percentile(float(metric[1:])) / 1000.0
    return {
        "min": h.get_min_value,
        "max": h.get_max_value,
        "avg": h.get_mean_value,
    }[metric]() / 1000.0
