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
    MIN_CPU,
    MIN_MEMORY,
    CurrentResources,
    MiB,
    Usage,
    decay_weight,
    format_range,
    format_span,
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
def test_too_few_points_give_no_advice(points: int) -> None:
    usage = Usage(
        cpu=[(i * TICK, 0.1) for i in range(points)],
        memory=[(i * TICK, 200.0 * MiB) for i in range(points)],
    )
    rec = recommend("agent", usage, TRACED)
    assert not rec.enough_data and rec.status == "no-advice"
    assert (rec.cpu_request, rec.cpu_limit, rec.memory_request, rec.memory_limit) == (
        None,
        None,
        None,
        None,
    )
    assert rec.current == TRACED  # what it keeps
    assert any(
        r.startswith("not enough data") and f"needs {KRR_MIN_POINTS}" in r for r in rec.reasons
    )
    if points:
        span = format_span((points - 1) * TICK)
        assert rec.reasons[0].startswith(f"data: {span} (1970-01-01 00:00")
    else:
        assert rec.reasons[0] == "data: no CPU or memory samples"


def test_enough_points_from_the_minimum_on() -> None:
    n = KRR_MIN_POINTS
    usage = Usage(
        cpu=[(i * TICK, 0.1) for i in range(n)], memory=[(i * TICK, 200.0 * MiB) for i in range(n)]
    )
    rec = recommend("agent", usage, TRACED, min_span=60)
    assert rec.enough_data and rec.status == "advised"
    assert rec.cpu_request == 115  # flat 0.1 cores: VPA p90 + 15%
    assert rec.memory_request == 230 * MiB  # flat 200 MiB: max + 15%


def test_oom_kill_raises_memory_even_without_enough_data() -> None:
    usage = Usage(cpu=[(0.0, 0.1)], memory=[(0.0, 850.0 * MiB)], oom_kills=[30.0])
    rec = recommend("agent", usage, TRACED)
    assert not rec.enough_data and rec.status == "oom-bump"
    # KRR: the 900 MiB limit + 25% = 1125 MiB, above VPA's 900 MiB + 20% = 1080 MiB.
    assert rec.memory_limit == math.ceil(900 * 1.25) * MiB
    assert rec.memory_request == math.ceil(900 * 1.25) * MiB
    assert rec.cpu_request is None and rec.cpu_limit is None  # no CPU advice
    assert rec.oom_memory == (rec.memory_request, rec.memory_limit)
    memory = [r for r in rec.reasons if r.startswith("memory")]
    assert len(memory) == 2
    assert all("after 1 OOM kill from 0 s of data" in r for r in memory), memory


def test_crash_loop_gets_vpas_bump_for_the_limit() -> None:
    """Killed at a 32 MiB limit again and again, never running long enough to be
    sampled: KRR's limit + 25% is the request, VPA's +100 MiB the limit."""
    kills = [10.0 * i for i in range(1, 8)]
    usage = Usage(cpu=[], memory=[(0.0, 8.0 * MiB)], oom_kills=kills)
    rec = recommend("worker", usage, CurrentResources(memory_limit=32 * MiB))
    assert rec.status == "oom-bump"
    assert rec.memory_request == 40 * MiB
    assert rec.memory_limit == 132 * MiB
    assert "OOM kills: 7 (1970-01-01 00:00:10 to 00:01:10 UTC)" in rec.reasons
    (limit,) = [r for r in rec.reasons if r.startswith("memory limit")]
    assert limit.startswith("memory limit 132 MiB after 7 OOM kills from 0 s of data: VPA OOM bump")
    assert "KRR: the current limit 32 MiB + 25% = 40 MiB" in limit


def test_oom_kills_without_a_limit_or_usage_say_why_there_is_no_bump() -> None:
    rec = recommend("worker", Usage(cpu=[], memory=[], oom_kills=[5.0]), CurrentResources())
    assert rec.status == "no-advice" and rec.memory_limit is None
    assert any("neither a memory limit nor a sampled usage" in r for r in rec.reasons)


def test_a_short_span_is_provisional_and_every_reason_says_so() -> None:
    """300 samples a second apart: enough of them for KRR, but 5 minutes are not 14 days."""
    start = 1796119200.0  # 2026-12-01 10:00 UTC
    n = 271
    usage = Usage(
        cpu=[(start + i, 0.2) for i in range(n)],
        memory=[(start + i, 100.0 * MiB) for i in range(n)],
    )
    rec = recommend("agent", usage)
    assert rec.enough_data and rec.provisional and rec.status == "provisional"
    assert rec.span is not None and rec.span.seconds == 270
    assert rec.reasons[0] == (
        "data: 4.5 min (2026-12-01 10:00 to 10:04 UTC), 271 CPU and 271 memory samples"
    )
    assert "provisional: 4.5 min of data, less than the 1 d the advice needs" in rec.reasons
    values = [r for r in rec.reasons if r.startswith(("cpu ", "memory "))]
    assert len(values) == 4
    assert all(" from 4.5 min of data: " in r for r in values), values
    assert not any("14" in r for r in rec.reasons)
    firm = recommend("agent", usage, min_span=60)
    assert firm.status == "advised"
    assert firm.cpu_request == rec.cpu_request  # the same figures, only the verdict differs


def test_a_week_says_seven_days() -> None:
    rec = recommend("agent", _trace(), TRACED)
    assert rec.status == "advised"
    assert rec.reasons[0].startswith("data: 7 d (1970-01-01 00:00 to 1970-01-07 23:59 UTC)")
    assert all(" from 7 d of data: " in r for r in rec.reasons if r.startswith(("cpu ", "memory ")))


def test_the_floors_are_named_when_they_set_a_value() -> None:
    n = 2 * KRR_MIN_POINTS
    tiny = Usage(
        cpu=[(i * TICK, 0.001) for i in range(n)], memory=[(i * TICK, 2.0 * MiB) for i in range(n)]
    )
    rec = recommend("sidecar", tiny, min_span=60)
    assert rec.cpu_request == MIN_CPU and rec.memory_request == MIN_MEMORY
    (cpu,) = [r for r in rec.reasons if r.startswith("cpu request")]
    (mem,) = [r for r in rec.reasons if r.startswith("memory request")]
    assert cpu.startswith("cpu request 10m from 3.3 h of data: the 10m floor")
    assert "above KRR p95 of usage = 1m" in cpu
    assert mem.startswith("memory request 32 MiB from 3.3 h of data: the 32 MiB floor (above KRR")
    busy = recommend("agent", _trace(), TRACED)
    assert not any("floor" in r for r in busy.reasons)


def test_cpu_limits_are_whole_plan_steps() -> None:
    rec = recommend("agent", _trace(), TRACED)
    assert rec.cpu_limit is not None and rec.cpu_limit % 10 == 0
    (limit,) = [r for r in rec.reasons if r.startswith("cpu limit")]
    # p99 x 1.2 is 1096m on this trace: the plan would floor that to 1090m, so 1100m.
    assert limit.startswith("cpu limit 1100m from 7 d of data: p99 of usage 914m x 1.2 = 1096m,")
    assert "rounded up to the plan's 10m step" in limit


def test_span_formats() -> None:
    assert [format_span(s) for s in (0, 25, 89, 90, 270, 7200, 86400, 3.2 * DAY, 14 * DAY)] == [
        "0 s",
        "25 s",
        "89 s",
        "1.5 min",
        "4.5 min",
        "2 h",
        "1 d",
        "3.2 d",
        "14 d",
    ]
    t = 1796119200.0
    assert format_range(t, t + 270) == "2026-12-01 10:00 to 10:04 UTC"
    assert format_range(t, t + 25) == "2026-12-01 10:00:00 to 10:00:25 UTC"
    assert format_range(t, t + 3 * DAY) == "2026-12-01 10:00 to 2026-12-04 10:00 UTC"
    assert format_range(t, t) == "2026-12-01 10:00:00 UTC"


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
    assert by_field["cpu limit"].startswith(f"cpu limit {rec.cpu_limit}m from 7 d of data:")
    assert by_field["memory limit"].startswith(
        f"memory limit {(rec.memory_limit or 0) // MiB} MiB from 7 d of data:"
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
