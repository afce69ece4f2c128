"""Analysis: anomaly detection on seeded synthetic series, right-sizing on replayed traces.

Every series comes from ``random.Random(seed)``, so a run is reproducible; the
statistical checks run over 50 series each, and each has a control showing the
check can fail (a looser detector, the current limits that did cause the kill).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest

from ops.report.analysis import (
    DAY,
    KRR_MIN_POINTS,
    MIN_HISTORY,
    SHIFT_AFTER,
    CurrentResources,
    MiB,
    Usage,
    decay_weight,
    detect_anomalies,
    find_anomalies,
    krr_simple,
    percentile,
    recommend,
    recommend_all,
    vpa_recommend,
    weighted_percentile,
)

# ------------------------------------------------------------------------------ anomalies

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
    kind: str, seed: int, magnitudes: Sequence[float]
) -> tuple[list[tuple[float, float]], list[int], list[int]]:
    """A clean series plus isolated single-point spikes (70%) and lasting level shifts
    (30%) of the given magnitudes in sigmas, 40-90 points apart, either sign."""
    rng = random.Random(seed)
    values, sigma = _base(kind, rng)
    spikes: list[int] = []
    shifts: list[int] = []
    at = MIN_HISTORY + rng.randint(5, 30)
    while at < LENGTH - 10:
        size = rng.choice(magnitudes) * sigma * rng.choice((-1, 1))
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


# ---------------------------------------------------------------------------- right-sizing

TICK = 60.0  # the collector's 1-minute samples
OOM_AT = 5 * DAY + 7 * 3600


def _trace(days: float = 7, seed: int = 1) -> Usage:
    """A recorded-style week of one service: CPU idles at 0.2 cores with bursts to 0.9
    lasting 5-15 minutes; memory saw-tooths 300-700 MiB every 3 h, with one spike to
    950 MiB that got OOM-killed under its 900 MiB limit (and restarted at 300 MiB)."""
    rng = random.Random(seed)
    cpu: list[tuple[float, float]] = []
    memory: list[tuple[float, float]] = []
    burst_until = -1
    level = 300 * MiB
    for i in range(int(days * DAY / TICK)):
        t = i * TICK
        if i > burst_until and rng.random() < 0.004:
            burst_until = i + rng.randint(5, 15)
        cores = (0.9 if i <= burst_until else 0.2) + rng.gauss(0, 0.02)
        cpu.append((t, max(0.0, cores)))
        level = level + 400 * MiB / 180 if level < 700 * MiB else 300 * MiB
        working_set = level + rng.gauss(0, 5 * MiB)
        if t == OOM_AT:
            working_set, level = 950 * MiB, 300 * MiB
        memory.append((t, working_set))
    return Usage(cpu=cpu, memory=memory, oom_kills=[OOM_AT])


TRACED = CurrentResources(
    cpu_request=250, cpu_limit=1000, memory_request=512 * MiB, memory_limit=900 * MiB
)


def test_advice_would_have_avoided_every_oom_kill() -> None:
    usage = _trace()
    peaks = [v for _, v in usage.memory]
    # The trace did exceed the limit it ran with (the control).
    assert max(peaks) > TRACED.memory_limit  # type: ignore[operator]
    rec = recommend("agent", usage, TRACED)
    assert rec.enough_data
    assert rec.memory_limit is not None and rec.memory_request is not None
    assert rec.memory_limit > max(peaks)
    assert rec.memory_limit >= rec.memory_request * 1.2  # headroom over the request
    # Never below either OOM bump: the 900 MiB limit + 25% (KRR), and the usage at the
    # kill (950 MiB) + max(100 MiB, 20%) (VPA).
    assert rec.memory_limit >= 900 * MiB * 1.25
    assert rec.memory_limit >= 950 * MiB * 1.2
    assert rec.memory_request >= 900 * MiB * 1.25
    assert any("OOM" in r for r in rec.reasons)


def test_cpu_limit_keeps_throttling_low() -> None:
    usage = _trace()
    rec = recommend("agent", usage, TRACED)
    cores = [v for _, v in usage.cpu]
    assert rec.cpu_limit is not None and rec.cpu_request is not None
    assert rec.cpu_limit / 1000 >= percentile(cores, 99)
    above = sum(v > rec.cpu_limit / 1000 for v in cores) / len(cores)
    assert above <= 0.01
    # The bursts fit: the limit is at least the 0.9-core burst level.
    assert rec.cpu_limit >= 900
    # And the request covers the idle level and then some (p95 / decayed p90 + 15%).
    assert rec.cpu_request >= percentile(cores, 95) * 1000
    assert rec.cpu_limit >= 2 * rec.cpu_request


def test_oversized_limits_come_down() -> None:
    rng = random.Random(4)
    n = 3 * 1440
    usage = Usage(
        cpu=[(i * TICK, 0.3 + rng.gauss(0, 0.03)) for i in range(n)],
        memory=[(i * TICK, 500 * MiB + rng.gauss(0, 10 * MiB)) for i in range(n)],
    )
    current = CurrentResources(
        cpu_request=2000, cpu_limit=4000, memory_request=4096 * MiB, memory_limit=8192 * MiB
    )
    rec = recommend("rag", usage, current)
    assert rec.enough_data
    assert rec.cpu_request is not None and rec.cpu_limit is not None
    assert rec.memory_request is not None and rec.memory_limit is not None
    assert rec.cpu_request < 2000 and rec.cpu_limit < 4000
    assert rec.memory_request < 4096 * MiB and rec.memory_limit < 8192 * MiB
    # Still above what it uses.
    assert rec.cpu_limit / 1000 > max(v for _, v in usage.cpu)
    assert rec.memory_limit > max(v for _, v in usage.memory)


@pytest.mark.parametrize("points", [0, 1, 50, KRR_MIN_POINTS - 1])
def test_too_few_points_keep_the_current_values(points: int) -> None:
    usage = Usage(
        cpu=[(i * TICK, 0.1) for i in range(points)],
        memory=[(i * TICK, 200.0 * MiB) for i in range(points)],
    )
    rec = recommend("agent", usage, TRACED)
    assert not rec.enough_data
    assert (rec.cpu_request, rec.cpu_limit, rec.memory_request, rec.memory_limit) == (
        250,
        1000,
        512 * MiB,
        900 * MiB,
    )
    assert "not enough data" in rec.reasons[0] and f"needs {KRR_MIN_POINTS}" in rec.reasons[0]
    bare = recommend("agent", usage)
    assert (bare.cpu_request, bare.cpu_limit, bare.memory_request, bare.memory_limit) == (
        None,
        None,
        None,
        None,
    )


def test_enough_points_from_the_minimum_on() -> None:
    n = KRR_MIN_POINTS
    usage = Usage(
        cpu=[(i * TICK, 0.1) for i in range(n)], memory=[(i * TICK, 200.0 * MiB) for i in range(n)]
    )
    rec = recommend("agent", usage, TRACED)
    assert rec.enough_data
    assert rec.cpu_request == 115  # flat 0.1 cores: VPA p90 + 15%
    assert rec.memory_request == 230 * MiB  # flat 200 MiB: max + 15%


def test_oom_kill_raises_the_limit_even_without_enough_data() -> None:
    usage = Usage(cpu=[(0.0, 0.1)], memory=[(0.0, 850.0 * MiB)], oom_kills=[30.0])
    rec = recommend("agent", usage, TRACED)
    assert not rec.enough_data
    assert rec.memory_limit == math.ceil(900 * 1.25) * MiB
    assert rec.cpu_limit == TRACED.cpu_limit


def _two_regimes(old: float, recent: float, days: int = 21) -> Usage:
    """Hourly samples: ``old`` for the first week, ``recent`` for the last day, in between
    a quiet 0.1 cores / 200 MiB."""
    samples = []
    for h in range(days * 24):
        if h < 7 * 24:
            samples.append(old)
        elif h >= (days - 1) * 24:
            samples.append(recent)
        else:
            samples.append(0.1)
    return Usage(
        cpu=[(h * 3600.0, v) for h, v in enumerate(samples)],
        memory=[(h * 3600.0, v * 2000 * MiB) for h, v in enumerate(samples)],
    )


def test_vpa_old_peaks_matter_less_than_recent_ones() -> None:
    assert decay_weight(0, DAY) == 0.5 and decay_weight(DAY, DAY) == 1.0
    weeks_ago = vpa_recommend(_two_regimes(old=1.0, recent=0.1))
    yesterday = vpa_recommend(_two_regimes(old=0.1, recent=1.0))
    # The busy week two to three weeks ago is all but forgotten...
    assert weeks_ago.cpu == pytest.approx(0.1 * 1.15)
    assert weeks_ago.memory == pytest.approx(200 * MiB * 1.15)
    # ...while the same load yesterday sets the target.
    assert yesterday.cpu == pytest.approx(1.0 * 1.15)
    assert yesterday.memory == pytest.approx(2000 * MiB * 1.15)
    # Without decay (a huge half-life) the old week would dominate the histogram.
    undecayed = vpa_recommend(_two_regimes(old=1.0, recent=0.1), half_life=1e12)
    assert undecayed.cpu > 0.5


def test_vpa_oom_bump() -> None:
    usage = Usage(
        cpu=[(i * TICK, 0.1) for i in range(200)],
        memory=[(i * TICK, 400.0 * MiB) for i in range(200)],
        oom_kills=[150 * TICK],
    )
    small = vpa_recommend(usage, CurrentResources(memory_limit=300 * MiB))
    assert small.oom_bump == 500 * MiB  # 400 MiB used at the kill: +100 MiB beats +20%
    large = vpa_recommend(usage, CurrentResources(memory_limit=1000 * MiB))
    assert large.oom_bump == 1200 * MiB  # the kill was at the 1000 MiB limit: +20%


def test_krr_oom_rule_raises_memory_to_the_limit_plus_a_quarter() -> None:
    usage = _trace()
    krr = krr_simple(usage, TRACED)
    assert krr.oom_kills == 1
    assert krr.max_memory == 950 * MiB
    # max working set + 15% would be 1092.5 MiB; the kill under 900 MiB asks for 1125 MiB.
    assert krr.memory == pytest.approx(900 * MiB * 1.25)
    calm = krr_simple(Usage(cpu=usage.cpu, memory=usage.memory), TRACED)
    assert calm.memory == pytest.approx(950 * MiB * 1.15)


def test_krr_looks_back_two_weeks() -> None:
    old = [(h * 3600.0, 4.0) for h in range(24)]  # a 4-core day three weeks before the rest
    recent = [(21 * DAY + i * TICK, 0.2) for i in range(200)]
    usage = Usage(cpu=old + recent, memory=[(t, 100.0 * MiB) for t, _ in recent])
    krr = krr_simple(usage)
    assert krr.cpu == pytest.approx(0.2)
    assert krr.cpu_points == 200


def test_heavy_throttling_raises_the_cpu_limit() -> None:
    rng = random.Random(9)
    n = 1000
    usage = Usage(
        cpu=[(i * TICK, min(1.0, 0.95 + rng.gauss(0, 0.05))) for i in range(n)],
        memory=[(i * TICK, 300.0 * MiB) for i in range(n)],
        cpu_throttling=[(i * TICK, 0.3) for i in range(n)],
    )
    rec = recommend("agent", usage, CurrentResources(cpu_limit=1000))
    assert rec.cpu_limit is not None and rec.cpu_limit >= 1250
    assert any("throttl" in r for r in rec.reasons)
    calm = recommend("agent", Usage(cpu=usage.cpu, memory=usage.memory), CurrentResources())
    assert not any("throttl" in r for r in calm.reasons)


def test_every_value_has_a_reason_naming_its_rule() -> None:
    rec = recommend("agent", _trace(), TRACED)
    by_field = {
        field: next(r for r in rec.reasons if r.startswith(field))
        for field in ("cpu request", "cpu limit", "memory request", "memory limit")
    }
    assert "p95" in by_field["cpu request"] and "p90" in by_field["cpu request"]
    assert "p99" in by_field["cpu limit"] and "5-minute mean" in by_field["cpu limit"]
    assert "+ 25%" in by_field["memory request"] or "+ 15%" in by_field["memory request"]
    assert "OOM bump" in by_field["memory limit"]
    assert by_field["cpu limit"].startswith(f"cpu limit {rec.cpu_limit}m:")
    assert by_field["memory limit"].startswith(
        f"memory limit {(rec.memory_limit or 0) // MiB} MiB:"
    )


def test_rounding_to_millicores_and_whole_mib() -> None:
    rec = recommend("agent", _trace(), TRACED)
    assert all(isinstance(v, int) for v in (rec.cpu_request, rec.cpu_limit))
    assert rec.memory_request is not None and rec.memory_request % MiB == 0
    assert rec.memory_limit is not None and rec.memory_limit % MiB == 0


def test_recommend_all_orders_by_service() -> None:
    usage = _trace(days=1)
    recs = recommend_all({"rag": usage, "agent": usage}, {"agent": TRACED})
    assert [r.service for r in recs] == ["agent", "rag"]
    assert recs[0] == recommend("agent", usage, TRACED)


def test_percentiles() -> None:
    assert percentile(range(101), 95) == 95
    assert percentile([1.0, 2.0], 50) == 1.5
    assert weighted_percentile([(1.0, 1.0), (2.0, 1.0), (3.0, 8.0)], 0.9) == 3.0
    assert weighted_percentile([(1.0, 9.0), (2.0, 1.0)], 0.9) == 1.0
    with pytest.raises(ValueError):
        percentile([], 50)
