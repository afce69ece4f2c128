"""Anomalies in one metric, judged against the metric's own recent behaviour.

Pure functions over samples (no I/O, standard library only), so the same history
always gives the same verdict and the tests can replay synthetic traces. The
level is a trailing rolling median (and a slope-following median for daily
cycles); the scale is the MAD of recent prediction errors (a robust z-score), so
one spike cannot hide the next one and no global model of the series is needed.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Series = Sequence[tuple[float, float]]  # (timestamp in seconds, value)


MAD_SCALE = 1.4826  # MAD x this estimates sigma for Gaussian noise
WINDOW = 30  # trailing points the level (median) is taken over
MIN_HISTORY = 12  # points needed before anything is judged
THRESHOLD = 5.0  # robust z-score beyond which a point is anomalous
SHIFT_AFTER = 3  # consecutive same-side deviations that make a new level
SCALE_WINDOW = 240  # recent prediction errors the scale (MAD) is taken over
REL_FLOOR = 0.005  # scale floor as a fraction of |level|: flat series ignore jitter
ABS_FLOOR = 1e-9  # scale floor in the metric's unit, so an all-zero series stays judgeable
_WIDEN = 3.0  # standard errors of the MAD added to the scale while the pool is filling
# Variance a prediction from n points adds, in units of the noise variance: the median
# of n adds pi/(2n); the trend's half-window median plus slope extrapolation ~3pi/(2n).
_FLAT_EXTRA, _TREND_EXTRA = math.pi / 2, 3 * math.pi / 2


@dataclass(frozen=True)
class Anomaly:
    """One point that left its baseline; ``score`` is the robust z-score's magnitude."""

    ts: float
    value: float
    expected: float  # the baseline's prediction for this point
    score: float  # |value - expected| / robust sigma, > threshold
    direction: str  # "up" or "down"
    metric: str = ""  # set by find_anomalies


class _ErrorPool:
    """The last ``size`` normalised absolute prediction errors, kept sorted for the MAD."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, error: float) -> None:
        self.fifo.append(error)
        insort(self.sorted, error)
        if len(self.fifo) > self.size:
            del self.sorted[bisect_left(self.sorted, self.fifo.popleft())]

    def sigma(self) -> float:
        """MAD x 1.4826, widened while few errors are known: a MAD of n points has a
        relative standard error of about sqrt(1.36/n), and an underestimated scale is
        what turns ordinary noise into false alarms."""
        s, n = self.sorted, len(self.sorted)
        mad = (s[(n - 1) // 2] + s[n // 2]) / 2 * MAD_SCALE
        return mad * (1 + _WIDEN * max(0.0, math.sqrt(1.36 / n) - math.sqrt(1.36 / self.size)))


def _median(values: list[float]) -> float:
    """The median as ``statistics.median`` computes it (the mean of the middle two
    for an even count), without importing statistics (decimal, fractions) on the
    cron path."""
    return _median_sorted(sorted(values))


def _median_sorted(s: list[float]) -> float:
    n = len(s)
    m = n // 2
    return s[m] if n % 2 else (s[m - 1] + s[m]) / 2


def _predict(
    times: list[float], values: list[float], lo: int, hi: int, ts: float
) -> tuple[float, float | None]:
    """Two predictions for ``ts`` from the points ``lo:hi``: the window's median
    (flat), and the recent half's median moved along the window's robust slope
    (trend; None below 4 points).

    The slope is the median of the slopes between points half a window apart, so
    one spike moves it little; extrapolation is capped at the window's span so a
    gap in the data cannot stretch it. (Times are sorted, so the recent half's
    central time needs no sort.)
    """
    flat = _median(values[lo:hi])
    h = (hi - lo) // 2
    if h < 2:
        return flat, None
    slopes = [
        (b - a) / (tb - ta)
        for a, b, ta, tb in zip(
            values[lo : hi - h],
            values[lo + h : hi],
            times[lo : hi - h],
            times[lo + h : hi],
            strict=True,
        )
        if tb > ta
    ]
    if not slopes:
        return flat, None
    level = _median(values[hi - h : hi])
    centre = _median_sorted(times[hi - h : hi])
    span = times[hi - 1] - times[lo]
    return flat, level + _median(slopes) * min(ts - centre, span)


def _clean(points: Series) -> list[tuple[float, float]]:
    """Time-ordered finite samples: NaNs and gaps from the collector are not evidence."""
    return sorted((float(t), float(v)) for t, v in points if math.isfinite(t) and math.isfinite(v))


def detect_anomalies(
    points: Series,
    *,
    window: int = WINDOW,
    min_history: int = MIN_HISTORY,
    threshold: float = THRESHOLD,
    shift_after: int = SHIFT_AFTER,
    scale_window: int = SCALE_WINDOW,
    rel_floor: float = REL_FLOOR,
    abs_floor: float = ABS_FLOOR,
    direction: str = "both",
    min_change: float = 0.0,
) -> list[Anomaly]:
    """Points of one series ``(ts, value)`` whose robust z-score exceeds ``threshold``.

    ``min_change`` is the floor of practical significance, in the metric's unit:
    a point closer than that to its prediction is never an anomaly, however
    quiet the series was (an idle container going from 0% to 0.13% CPU is
    statistically far out and means nothing). ``direction`` ("up", "down" or
    "both") says which side is reported: only the side that hurts is worth a
    page (a host getting less busy is not). Points beyond the threshold on the
    other side are still outliers to the baseline (kept out of the noise scale,
    counted for level shifts), just not reported.

    Level: each point is predicted from the ``window`` points before it (never
    from itself) in two ways, the window's median (flat) and the recent half's
    median along the window's robust slope (trend, so a daily cycle or a ramp is
    not mistaken for a run of anomalies). Scale: for each way, the MAD x 1.4826 of
    its last ``scale_window`` prediction errors on unflagged points, normalised
    for the prediction's own uncertainty; the way with the smaller scale (the one
    that has predicted this series better lately) judges the point. A MAD over a
    30-point window alone is too noisy (about +-21%) to hold a high threshold
    without false alarms; the error pool brings that to about +-7%. The scale is
    floored at ``rel_floor x |level|`` and ``abs_floor``, so a perfectly flat
    series does not flag tiny jitter, and widened while the pool is still small.
    The first ``min_history`` points only build the baseline and are never flagged.

    Level shifts: ``shift_after`` consecutive points beyond ``threshold / 2`` on
    the same side, at least one of them flagged, are a new level rather than a
    run of spikes. The flagged ones among them are reported (that is where the
    shift is); the baseline then restarts at the first of them, so the new level
    is normal from the next point on instead of being flagged until the window
    has absorbed it. The error pool carries over, so the noise scale is kept.

    The default threshold of 5 lets Gaussian noise through with about one false
    alarm per 10^5-10^6 points while catching most 6-sigma and nearly every
    8-sigma spike or shift.
    """
    if not 2 <= min_history <= window or shift_after < 1 or threshold <= 0 or scale_window < 1:
        raise ValueError(
            "need window >= min_history >= 2, shift_after >= 1, threshold > 0, scale_window >= 1"
        )
    if direction not in ("up", "down", "both") or not min_change >= 0:
        raise ValueError('need direction "up", "down" or "both", and min_change >= 0')
    data = _clean(points)
    times = [t for t, _ in data]
    values = [v for _, v in data]
    flat_pool, trend_pool = _ErrorPool(scale_window), _ErrorPool(scale_window)
    out: list[Anomaly] = []
    start = 0  # first index of the current level
    streak: list[int] = []  # consecutive indices beyond threshold/2 on one side
    streak_side = 0
    streak_flagged = False
    for i, (ts, value) in enumerate(data):
        lo = max(start, i - window)
        n = i - lo
        if start == 0 and n < min_history:
            continue
        flat, trend = _predict(times, values, lo, i, ts)
        if not flat_pool.sorted:  # seed both pools with the first baseline's spread
            for v in values[lo:i]:
                flat_pool.add(abs(v - flat))
                trend_pool.add(abs(v - flat))
        flat_k = math.sqrt(1 + _FLAT_EXTRA / n)
        trend_k = math.sqrt(1 + _TREND_EXTRA / n)
        scale, expected = flat_pool.sigma() * flat_k, flat
        if trend is not None and trend_pool.sigma() * trend_k < scale:
            scale, expected = trend_pool.sigma() * trend_k, trend
        scale = max(scale, rel_floor * abs(flat), abs_floor)
        z = (value - expected) / scale
        flagged = abs(z) > threshold and abs(value - expected) >= min_change
        way = "up" if z > 0 else "down"
        if flagged:  # reported only on the side that hurts; an outlier either way
            if direction in ("both", way):
                out.append(Anomaly(ts, value, expected, abs(z), way))
        else:  # anomalies would inflate the noise estimate
            flat_pool.add(abs(value - flat) / flat_k)
            if trend is not None:
                trend_pool.add(abs(value - trend) / trend_k)
        side = (z > 0) - (z < 0)
        if abs(z) <= threshold / 2:
            streak, streak_side, streak_flagged = [], 0, False
        elif side == streak_side:
            streak.append(i)
            streak_flagged |= flagged
        else:
            streak, streak_side, streak_flagged = [i], side, flagged
        if len(streak) >= shift_after and streak_flagged:
            start = streak[0]  # a new level: later points are judged against it
            streak, streak_side, streak_flagged = [], 0, False
    return out


def may_be_anomalous(
    points: Series, *, direction: str, min_change: float, window: int = WINDOW
) -> bool:
    """Whether the last point could be worth reporting at all: on the side that
    hurts it must be at least ``min_change`` beyond the least extreme of the
    ``window`` points before it (for "up", their minimum).

    Exact for the flat prediction (a median is never below the minimum), and on
    purpose for the trend one: a value within the floor of something the metric
    did within its window is not news, whatever a steep extrapolation predicts.
    The cron path checks this before ``detect_anomalies``, which re-scores the
    whole window and costs a hundred predictions per series.
    """
    data = _clean(points)
    if len(data) <= MIN_HISTORY:
        return False
    value = data[-1][1]
    before = [v for _, v in data[-window - 1 : -1]]
    if direction == "up":
        return value - min(before) >= min_change
    if direction == "down":
        return max(before) - value >= min_change
    return value - min(before) >= min_change or max(before) - value >= min_change


def find_anomalies(
    series: Mapping[str, Series],
    *,
    window: int = WINDOW,
    min_history: int = MIN_HISTORY,
    threshold: float = THRESHOLD,
    shift_after: int = SHIFT_AFTER,
    scale_window: int = SCALE_WINDOW,
    rel_floor: float = REL_FLOOR,
    abs_floor: float = ABS_FLOOR,
    direction: str = "both",
    min_change: float = 0.0,
) -> list[Anomaly]:
    """``detect_anomalies`` over named series; each anomaly carries its metric name.

    Ordered by time, then name, so anomalies of related metrics sit together.
    """
    found = [
        Anomaly(a.ts, a.value, a.expected, a.score, a.direction, name)
        for name, points in series.items()
        for a in detect_anomalies(
            points,
            window=window,
            min_history=min_history,
            threshold=threshold,
            shift_after=shift_after,
            scale_window=scale_window,
            rel_floor=rel_floor,
            abs_floor=abs_floor,
            direction=direction,
            min_change=min_change,
        )
    ]
    return sorted(found, key=lambda a: (a.ts, a.metric))
