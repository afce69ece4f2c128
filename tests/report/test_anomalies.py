"""Anomaly detection on seeded synthetic series.

Every series comes from ``random.Random(seed)``, so a run is reproducible; the
statistical checks run over 50 series each, and each has a control showing the
check can fail (a looser detector).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from ops.report.anomalies import MIN_HISTORY, SHIFT_AFTER, detect_anomalies, find_anomalies
from ops.report.rightsizing import (
    DAY,
)

STEP = 300.0  # 5-minute samples: 288 a day
LENGTH = 1000  # about 3.5 days
CLEAN_LENGTH = 500  # about 1.7 days
SERIES = 50
KINDS = ("steady", "trend", "daily")


def _base(kind: str, rng: random.Random, n: int = LENGTH) -> tuple[list[float], float]:
    """Gaussian noise (sigma 1-5% of the level) around a level, a slow ramp or a daily sine."""
    level = rng.uniform(20, 1000)
    sigma = level * rng.uniform(0.01, 0.05)
    if kind == "steady":
        shape = [level] * n
    elif kind == "trend":  # drifts 2-10 sigma over the series
        slope = rng.choice((-1, 1)) * rng.uniform(2, 10) * sigma / n
        shape = [level + slope * i for i in range(n)]
    else:  # daily cycle, amplitude 2-10 sigma
        amp, phase = rng.uniform(2, 10) * sigma, rng.uniform(0, 2 * math.pi)
        shape = [level + amp * math.sin(2 * math.pi * i * STEP / DAY + phase) for i in range(n)]
    return [v + rng.gauss(0, sigma) for v in shape], sigma


def _points(values: Sequence[float]) -> list[tuple[float, float]]:
    return [(i * STEP, v) for i, v in enumerate(values)]


def _injected(
    kind: str, seed: int, magnitudes: Sequence[float], ups: set[int] | None = None
) -> tuple[list[tuple[float, float]], list[int], list[int]]:
    """A clean series plus isolated single-point spikes (70%) and lasting level shifts
    (30%) of the given magnitudes in sigmas, 40-90 points apart, either sign
    (``ups``, if given, collects the indices of the upward ones)."""
    rng = random.Random(seed)
    values, sigma = _base(kind, rng)
    spikes: list[int] = []
    shifts: list[int] = []
    at = MIN_HISTORY + rng.randint(5, 30)
    while at < LENGTH - 10:
        size = rng.choice(magnitudes) * sigma * rng.choice((-1, 1))
        if ups is not None and size > 0:
            ups.add(at)
        if rng.random() < 0.7:
            spikes.append(at)
            values[at] += size
        else:
            shifts.append(at)
            for j in range(at, LENGTH):
                values[j] += size
        at += rng.randint(40, 90)
    return _points(values), spikes, shifts


def _precision_recall(
    kind: str, magnitudes: Sequence[float], **kwargs: float
) -> tuple[float, float, int]:
    """Over SERIES injected series: a flag is right at a spike or among the first
    SHIFT_AFTER points of a shift (the documented behaviour); an event is found when
    its point (a shift's first point) is flagged."""
    right = flags = found = events = 0
    for seed in range(SERIES):
        points, spikes, shifts = _injected(kind, 1000 + seed, magnitudes)
        flagged = {round(a.ts / STEP) for a in detect_anomalies(points, **kwargs)}
        expected = set(spikes) | {s + k for s in shifts for k in range(SHIFT_AFTER)}
        flags += len(flagged)
        right += len(flagged & expected)
        events += len(spikes) + len(shifts)
        found += sum(i in flagged for i in spikes + shifts)
    return right / flags, found / events, events


@pytest.mark.parametrize("kind", KINDS)
def test_clean_series_are_never_flagged(kind: str) -> None:
    # 75,000 points over the three kinds. The false-alarm rate is a few per million
    # points (Gaussian tails beyond 5 sigma are rare, not impossible), so much longer
    # runs would eventually flag a genuine 5-sigma draw.
    series = [_points(_base(kind, random.Random(seed), CLEAN_LENGTH)[0]) for seed in range(SERIES)]
    assert [a for points in series for a in detect_anomalies(points)] == []
    # Control: the same series do hold points a naive 3-sigma rule would call anomalies.
    assert sum(len(detect_anomalies(points, threshold=3)) for points in series) > 10


@pytest.mark.parametrize(
    ("kind", "magnitudes"),
    [
        ("steady", (6, 8, 10, 15)),
        ("trend", (6, 8, 10, 15)),
        # A 30-point median lags a steep daily cycle and misses its peaks by up to half
        # a sigma, so 6-sigma events there are found only about half the time.
        ("daily", (8, 10, 15)),
    ],
)
def test_injected_spikes_and_shifts_precision_and_recall(
    kind: str, magnitudes: tuple[float, ...]
) -> None:
    precision, recall, events = _precision_recall(kind, magnitudes)
    assert events > 400
    assert precision >= 0.9, f"precision {precision:.3f}"
    assert recall >= 0.9, f"recall {recall:.3f}"


def test_precision_recall_can_fail() -> None:
    # Control for the test above: a low threshold raises recall but drowns it in noise.
    precision, recall, _ = _precision_recall("steady", (6, 8, 10, 15), threshold=2.5)
    assert recall > 0.95
    assert precision < 0.9


@pytest.mark.parametrize("size", [-10, 8, 25])
def test_level_shift_is_flagged_then_becomes_normal(size: float) -> None:
    rng = random.Random(7)
    values = [100 + rng.gauss(0, 1) + (size if i >= 300 else 0) for i in range(600)]
    flagged = [round(a.ts / STEP) for a in detect_anomalies(_points(values))]
    assert flagged[:1] == [300]
    assert all(300 <= i < 300 + SHIFT_AFTER for i in flagged), flagged
    assert all(
        a.direction == ("up" if size > 0 else "down") for a in detect_anomalies(_points(values))
    )


@pytest.mark.parametrize("length", [0, 1, 5, MIN_HISTORY])
def test_too_short_series_flags_nothing(length: int) -> None:
    values = [10.0 + 0.1 * (i % 3) for i in range(length)]
    if values:
        values[-1] = 1e6  # an outrageous last point: still no history to judge it by
    assert detect_anomalies(_points(values)) == []


def test_first_point_after_min_history_is_judged() -> None:
    values = [10.0 + 0.1 * (i % 3) for i in range(MIN_HISTORY)] + [1e6]
    [anomaly] = detect_anomalies(_points(values))
    assert anomaly.ts == MIN_HISTORY * STEP
    assert anomaly.direction == "up"


def test_flat_series_ignores_jitter_but_not_a_jump() -> None:
    rng = random.Random(3)
    flat = [500.0 + rng.uniform(-1e-6, 1e-6) for _ in range(200)]
    assert detect_anomalies(_points(flat)) == []  # MAD ~1e-6, floored at 0.5% of the level
    jumped = [*flat]
    jumped[150] = 550.0  # +10%
    [anomaly] = detect_anomalies(_points(jumped))
    assert (anomaly.ts, anomaly.value) == (150 * STEP, 550.0)
    assert anomaly.expected == pytest.approx(500.0)
    assert anomaly.score == pytest.approx(50 / (0.005 * 500), rel=1e-3)
    zeros = [0.0] * 50
    zeros[40] = 1.0
    assert [a.ts for a in detect_anomalies(_points(zeros))] == [40 * STEP]


def test_spike_reports_expected_score_and_direction() -> None:
    rng = random.Random(11)
    values = [50 + rng.gauss(0, 2) for _ in range(300)]
    values[200] -= 30  # 15 sigma down
    [anomaly] = detect_anomalies(_points(values))
    assert anomaly.ts == 200 * STEP
    assert anomaly.direction == "down"
    assert anomaly.expected == pytest.approx(50, abs=1.5)
    assert anomaly.score == pytest.approx(15, rel=0.25)


def test_unsorted_and_non_finite_points_are_handled() -> None:
    rng = random.Random(5)
    points = _points([20 + rng.gauss(0, 1) for _ in range(120)])
    points[100] = (points[100][0], 40.0)
    noisy = [*points, (5.0, math.nan), (math.inf, 3.0)]
    rng.shuffle(noisy)
    assert [a.ts for a in detect_anomalies(noisy)] == [100 * STEP]


def test_find_anomalies_names_metrics_and_orders_by_time() -> None:
    rng = random.Random(2)
    cpu = [0.5 + rng.gauss(0, 0.01) for _ in range(200)]
    mem = [300 + rng.gauss(0, 3) for _ in range(200)]
    cpu[150] = 2.0
    mem[120] = 400.0
    mem[150] = 10.0
    found = find_anomalies({"mem": _points(mem), "cpu": _points(cpu), "idle": []})
    assert [(a.metric, round(a.ts / STEP), a.direction) for a in found] == [
        ("mem", 120, "up"),
        ("cpu", 150, "up"),
        ("mem", 150, "down"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"window": 10, "min_history": 11}, {"min_history": 1}, {"threshold": 0}, {"shift_after": 0}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        detect_anomalies([], **kwargs)  # type: ignore[arg-type]


# --------------------------------------------- what is worth a page (the cron settings)


def _precision_recall_up(kind: str, magnitudes: Sequence[float]) -> tuple[float, float]:
    """As ``_precision_recall``, judging only upward events (what ``direction="up"``
    reports), with the floor of practical significance at 2 sigma of each series."""
    right = flags = found = events = 0
    for seed in range(SERIES):
        _, sigma = _base(kind, random.Random(1000 + seed))
        up: set[int] = set()
        points, spikes, shifts = _injected(kind, 1000 + seed, magnitudes, up)
        flagged = {
            round(a.ts / STEP)
            for a in detect_anomalies(points, direction="up", min_change=2 * sigma)
        }
        expected = {i for i in spikes if i in up} | {
            s + k for s in shifts if s in up for k in range(SHIFT_AFTER)
        }
        flags += len(flagged)
        right += len(flagged & expected)
        events += len(up)
        found += len(flagged & up)
    return right / flags, found / events


@pytest.mark.parametrize(
    ("kind", "magnitudes"),
    [("steady", (6, 8, 10, 15)), ("trend", (6, 8, 10, 15)), ("daily", (8, 10, 15))],
)
def test_only_the_direction_that_hurts_keeps_precision_and_recall(
    kind: str, magnitudes: tuple[float, ...]
) -> None:
    precision, recall = _precision_recall_up(kind, magnitudes)
    assert precision >= 0.9, f"precision {precision:.3f}"
    assert recall >= 0.85, f"recall {recall:.3f}"


def _idle(seed: int, n: int = 400) -> list[tuple[float, float]]:
    """An idle container's CPU %: zero, a few hundredths of jitter, the odd 0.1-0.3%
    blip (a health check) -- statistically wild, practically nothing."""
    rng = random.Random(seed)
    values = [max(0.0, rng.gauss(0, 0.005)) for _ in range(n)]
    for i in range(MIN_HISTORY + 5, n, rng.randint(20, 40)):
        values[i] = rng.uniform(0.1, 0.3)
    return _points(values)


def test_an_idle_series_is_not_worth_a_page() -> None:
    series = [_idle(seed) for seed in range(SERIES)]
    # The floor (10 points of CPU, as the cron path uses) silences it ...
    assert [a for s in series for a in detect_anomalies(s, direction="up", min_change=10.0)] == []
    # ... control: without the floor, the same blips are "anomalies" by the numbers.
    assert sum(len(detect_anomalies(s, direction="up")) for s in series) > SERIES


def test_getting_better_is_not_worth_a_page() -> None:
    """A host that gets less busy (CPU halves for good) is not an alert."""
    rng = random.Random(11)
    values = [60 + rng.gauss(0, 2) - (30 if i >= 300 else 0) for i in range(600)]
    assert detect_anomalies(_points(values), direction="up", min_change=10.0) == []
    # Control: the same drop is flagged when both directions are judged.
    both = detect_anomalies(_points(values), min_change=10.0)
    assert both and all(a.direction == "down" for a in both)
    # And the direction that hurts is still caught, floor and all.
    worse = [60 + rng.gauss(0, 2) + (30 if i >= 300 else 0) for i in range(600)]
    (first, *_) = detect_anomalies(_points(worse), direction="up", min_change=10.0)
    assert round(first.ts / STEP) == 300 and first.direction == "up"


def test_a_change_below_the_floor_is_never_an_anomaly() -> None:
    values = [100.0] * 100 + [103.0] + [100.0] * 20  # a 3-unit step on a perfectly flat line
    assert detect_anomalies(_points(values)) != []
    assert detect_anomalies(_points(values), min_change=5.0) == []
    assert detect_anomalies(_points(values), min_change=3.0) != []  # the floor is inclusive
    with pytest.raises(ValueError):
        detect_anomalies(_points(values), direction="sideways")
    with pytest.raises(ValueError):
        detect_anomalies(_points(values), min_change=-1)


def test_the_cron_pre_check_never_hides_what_the_detector_would_report() -> None:
    """``may_be_anomalous`` lets the cron path skip a series' hundred predictions when
    its last point cannot be news; on every injected series, each point the detector
    reports (up, with a floor) passes the pre-check on the window ending there."""
    from ops.report.anomalies import WINDOW, may_be_anomalous

    checked = 0
    for kind, magnitudes in (
        ("steady", (6, 8, 10, 15)),
        ("trend", (6, 8, 10, 15)),
        ("daily", (8, 10, 15)),
    ):
        for seed in range(10):
            _, sigma = _base(kind, random.Random(2000 + seed))
            points, _, _ = _injected(kind, 2000 + seed, magnitudes)
            for a in detect_anomalies(points, direction="up", min_change=2 * sigma):
                i = round(a.ts / STEP)
                window = points[max(0, i - 4 * WINDOW) : i + 1]
                assert may_be_anomalous(window, direction="up", min_change=2 * sigma), (
                    kind,
                    seed,
                    i,
                )
                checked += 1
    assert checked > 100
    # And it does skip the ordinary case: steady noise, a floor well above it.
    calm = _points(_base("steady", random.Random(5), 120)[0])
    assert not may_be_anomalous(calm, direction="up", min_change=1e6)
