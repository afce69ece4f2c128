"""Right-sizing on replayed traces: seeded synthetic usage, with controls showing
each check can fail (the current limits that did cause the kill).
"""

from __future__ import annotations

import math
import random

import pytest

from ops.report.rightsizing import (
    DAY,
    KRR_MIN_POINTS,
    CurrentResources,
    MiB,
    Usage,
    decay_weight,
    krr_simple,
    percentile,
    recommend,
    recommend_all,
    vpa_recommend,
    weighted_percentile,
)

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
