"""HdrHistogram settings and read-outs shared by the Locust plugin and the verdict.

Values are microseconds from 1 µs to one hour with 3 significant digits: any
percentile is within 0.1% of the recorded value, at a fixed ~100 KB per
histogram whatever the request count.

``hdrh`` has no type hints; :class:`Histogram` says what this code uses of
it, and every histogram is made here (:func:`new`, :func:`decode`), so the
rest of the code is checked against that.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


class Histogram(Protocol):
    """The part of ``hdrh.histogram.HdrHistogram`` vots-ops uses."""

    def record_value(self, value: int) -> bool: ...
    def add(self, other: Histogram) -> None: ...
    def get_total_count(self) -> int: ...
    def get_value_at_percentile(self, percentile: float) -> int: ...
    def get_min_value(self) -> int: ...
    def get_max_value(self) -> int: ...
    def get_mean_value(self) -> float: ...
    def encode(self) -> bytes: ...


def _class() -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram


def new() -> Histogram:
    return cast(Histogram, _class()(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS))


def decode(text: str | None) -> Histogram:
    """A histogram from its compressed base64 form (``encode``); empty for none."""
    return cast(Histogram, _class().decode(text.encode("ascii"))) if text else new()


def encode(h: Histogram) -> str:
    """The compressed base64 form, as text (what crosses from workers to the master)."""
    return h.encode().decode("ascii")


def summary(h: Histogram) -> dict[str, float]:
    """Percentiles, min, max and mean in milliseconds; empty when nothing was recorded."""
    if h.get_total_count() == 0:
        return {}
    out = {f"p{format(q, 'g')}": h.get_value_at_percentile(q) / 1000.0 for q in PERCENTILES}
    out["min"] = h.get_min_value() / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    out["avg"] = h.get_mean_value() / 1000.0
    return out


def value_at(h: Histogram, metric: str) -> float | None:
    """``p95`` / ``p99.9`` / ``min`` / ``max`` / ``avg`` in milliseconds."""
    if h.get_total_count() == 0:
        return None
    if metric.startswith("p"):
        return h.get_value_at_percentile(float(metric[1:])) / 1000.0
    read = {"min": h.get_min_value, "max": h.get_max_value, "avg": h.get_mean_value}[metric]
    return read() / 1000.0
