"""Right-sizing advice per service from its usage history.

Pure functions over samples (no I/O, standard library only), so the same history
always gives the same advice and the tests can replay synthetic traces. Two
known recommenders, KRR's "simple" strategy (percentiles over the last two
weeks) and the Kubernetes VPA recommender (exponentially decaying histograms),
each give a request; the larger one is taken, and the CPU and memory limits
that neither gives on its own are added. Every piece of advice says what span of
data it stands on, and advice from less than ``MIN_HISTORY`` of it is marked
provisional: four minutes of samples are not a fortnight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops.report.anomalies import Series, _clean

MiB = 1024**2
HOUR = 3600.0
DAY = 24 * HOUR


# KRR "simple" strategy.
KRR_HISTORY = 14 * DAY  # how far back KRR looks
KRR_MIN_POINTS = 100  # fewer CPU or memory samples in that window: no advice
KRR_CPU_PERCENTILE = 95.0
KRR_MEMORY_BUFFER = 0.15  # memory = max working set + 15%
KRR_OOM_BUMP = 0.25  # after an OOM kill: memory = current limit + 25%
# VPA recommender.
VPA_HALF_LIFE = DAY  # a sample's weight halves every 24 h of age
VPA_CPU_PERCENTILE = 0.90
VPA_MEMORY_PERCENTILE = 0.90
VPA_MARGIN = 0.15
VPA_PEAK_INTERVAL = DAY  # memory: one peak per interval goes into the histogram
VPA_OOM_MIN_BUMP = 100 * MiB  # after an OOM: max(usage + 100 MiB, usage x 1.2)
VPA_OOM_BUMP_RATIO = 1.2
OOM_NEAR = 300.0  # seconds either side of a kill in which its usage is looked up
# Limits.
CPU_LIMIT_PERCENTILE = 99.0
CPU_LIMIT_MARGIN = 1.2  # limit >= p99 x 1.2
CPU_LIMIT_REQUEST_FACTOR = 2.0  # limit >= request x 2, room to burst
CPU_BURST_WINDOW = 300.0  # limit >= the highest 5-minute mean: sustained bursts fit
THROTTLED = 0.10  # p90 of the throttled-period ratio above this: usage was capped
THROTTLE_BUMP = 1.25  # then limit >= current limit x 1.25
MEMORY_LIMIT_HEADROOM = 1.2  # memory limit >= request x 1.2
CPU_LIMIT_STEP = 10  # millicores: the plan rounds CPU limits down to 0.01 CPU, so advise multiples
MIN_CPU = 10  # millicores: the smallest CPU bound the plan accepts (Docker's 0.01 CPU)
MIN_MEMORY = 32 * MiB  # nothing is advised below this
CPU_FLOOR = (float(MIN_CPU), f"the {MIN_CPU}m floor (the smallest CPU bound the plan takes)")
MEMORY_FLOOR = (float(MIN_MEMORY), f"the {MIN_MEMORY // MiB} MiB floor")
# Advice from a shorter span of samples is provisional (KRR itself looks back 14 days).
MIN_HISTORY = DAY


@dataclass(frozen=True)
class Usage:
    """One service's history: what the collector recorded (per replica)."""

    cpu: Series  # (ts, cores in use)
    memory: Series  # (ts, working-set bytes)
    oom_kills: Sequence[float] = ()  # timestamps of OOM kills
    cpu_throttling: Series = ()  # (ts, throttled periods / periods, 0..1), optional


@dataclass(frozen=True)
class CurrentResources:
    """What the service runs with now (per replica); None = not set."""

    cpu_request: int | None = None  # millicores (the reservation)
    cpu_limit: int | None = None  # millicores
    memory_request: int | None = None  # bytes (the reservation)
    memory_limit: int | None = None  # bytes


def format_span(seconds: float) -> str:
    """A span of data as people say it, with one decimal where it matters:
    ``25 s``, ``4.5 min``, ``7.2 h``, ``3.2 d``, ``14 d``."""
    seconds = max(0.0, seconds)
    unit, size = "d", DAY
    for name, scale, below in (("s", 1.0, 90.0), ("min", 60.0, 90 * 60.0), ("h", HOUR, DAY)):
        if seconds < below:
            unit, size = name, scale
            break
    value = seconds / size
    text = f"{value:.0f}" if unit == "s" else f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def format_range(first: float, last: float) -> str:
    """``2026-12-01 10:00 to 10:04 UTC`` (the date once when both ends share it;
    seconds when the span is under two minutes)."""
    a = datetime.fromtimestamp(first, UTC)
    b = datetime.fromtimestamp(last, UTC)
    clock = "%H:%M:%S" if last - first < 120 else "%H:%M"
    left = a.strftime(f"%Y-%m-%d {clock}")
    if b.strftime(f"%Y-%m-%d {clock}") == left:
        return f"{left} UTC"
    right = b.strftime(clock if a.date() == b.date() else f"%Y-%m-%d {clock}")
    return f"{left} to {right} UTC"


@dataclass(frozen=True)
class Span:
    """The samples one piece of advice stands on: the first and the last, and how many."""

    first: float
    last: float
    cpu_samples: int
    memory_samples: int

    @property
    def seconds(self) -> float:
        return self.last - self.first

    @property
    def length(self) -> str:
        """``4.5 min``"""
        return format_span(self.seconds)

    @property
    def dates(self) -> str:
        """``2026-12-01 10:00 to 10:04 UTC``"""
        return format_range(self.first, self.last)


def data_span(usage: Usage, since: float = -math.inf) -> Span | None:
    """The CPU and memory samples from ``since`` on; None when there are none."""
    cpu = [t for t, _ in _clean(usage.cpu) if t >= since]
    memory = [t for t, _ in _clean(usage.memory) if t >= since]
    stamps = cpu + memory
    if not stamps:
        return None
    return Span(min(stamps), max(stamps), len(cpu), len(memory))


@dataclass(frozen=True)
class Recommendation:
    """Advice for one service: CPU in millicores, memory in bytes (whole MiB); None
    where nothing is advised (the service keeps what it has, ``current``).

    ``reasons`` has one line per value naming the rule that set it and the span of
    data it used, plus notes (the data, OOM kills, throttling, too little data).
    ``oom_memory`` is the (request, limit) that the OOM kills alone ask for, which
    holds whatever the span (a kill is evidence on its own).
    """

    service: str
    cpu_request: int | None
    cpu_limit: int | None
    memory_request: int | None
    memory_limit: int | None
    reasons: list[str]
    enough_data: bool  # KRR's minimum number of CPU and memory samples
    span: Span | None = None  # the samples the advice stands on
    provisional: bool = False  # enough samples, but over less than the minimum span
    oom_kills: int = 0
    oom_memory: tuple[int, int] | None = None
    current: CurrentResources = field(default_factory=lambda: CurrentResources())

    @property
    def status(self) -> str:
        """``advised``, ``provisional`` (too short a span), ``oom-bump`` (too few
        samples, memory raised after OOM kills) or ``no-advice``."""
        if self.enough_data:
            return "provisional" if self.provisional else "advised"
        return "oom-bump" if self.memory_limit is not None else "no-advice"


@dataclass(frozen=True)
class KrrEstimate:
    """KRR's "simple" strategy over the last ``KRR_HISTORY``."""

    cpu: float  # cores: p95 of usage
    memory: float  # bytes: max working set + 15%, or current limit + 25% after an OOM kill
    max_memory: float  # bytes: the highest working set seen
    cpu_points: int
    memory_points: int
    oom_kills: int
    enough_data: bool


@dataclass(frozen=True)
class VpaEstimate:
    """The VPA recommender's target: decayed percentiles plus its safety margin."""

    cpu: float  # cores: p90 of the decayed usage histogram x 1.15
    memory: float  # bytes: p90 of the decayed per-interval peaks (OOM-bumped) x 1.15
    oom_bump: float  # bytes: the largest OOM bump among the recent kills, 0 without


def percentile(values: Iterable[float], pct: float) -> float:
    """The ``pct``-th percentile (0..100) with linear interpolation, as numpy's default."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile of no values")
    pos = (len(data) - 1) * pct / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def weighted_percentile(pairs: Iterable[tuple[float, float]], q: float) -> float:
    """Smallest value whose cumulative weight reaches ``q`` (0..1) of the total:
    VPA's histogram percentile with infinitely fine buckets. ``pairs`` is (value, weight)."""
    data = sorted(pairs)
    total = math.fsum(w for _, w in data)
    if not data or total <= 0:
        raise ValueError("weighted percentile of no weight")
    acc = 0.0
    for value, weight in data:
        acc += weight
        if acc >= q * total * (1 - 1e-12):
            return value
    return data[-1][0]


def decay_weight(ts: float, reference: float, half_life: float = VPA_HALF_LIFE) -> float:
    """VPA's weight ``2^((ts - reference) / half_life)``: 1 for the newest sample,
    halving with every half-life of age, so old behaviour fades instead of ageing out."""
    return float(2.0 ** ((ts - reference) / half_life))


def _latest(usage: Usage) -> float:
    stamps = [t for t, _ in usage.cpu] + [t for t, _ in usage.memory] + list(usage.oom_kills)
    return max(stamps) if stamps else 0.0


def _usage_at_oom(memory: list[tuple[float, float]], kill: float, limit: int | None) -> float:
    """What the container held when it was killed: the peak sampled around the kill,
    and at least its limit (the kernel kills at the limit; samples may miss the peak)."""
    near = [v for t, v in memory if abs(t - kill) <= OOM_NEAR]
    if near or limit is not None:
        return max([*near, float(limit or 0)])
    return max((v for _, v in memory), default=0.0)


def _vpa_oom_bump(used: float) -> float:
    return max(used + VPA_OOM_MIN_BUMP, used * VPA_OOM_BUMP_RATIO)


def krr_simple(
    usage: Usage, current: CurrentResources | None = None, *, history: float = KRR_HISTORY
) -> KrrEstimate:
    """KRR's "simple" strategy: CPU = p95 of usage, memory = max working set + 15%,
    over the last ``history``; an OOM kill in that window raises memory to the
    current limit + 25%. Needs ``KRR_MIN_POINTS`` samples of each."""
    current = current or CurrentResources()
    since = _latest(usage) - history
    cpu = [max(0.0, v) for t, v in _clean(usage.cpu) if t >= since]
    memory = [v for t, v in _clean(usage.memory) if t >= since]
    kills = [k for k in usage.oom_kills if k >= since]
    enough = len(cpu) >= KRR_MIN_POINTS and len(memory) >= KRR_MIN_POINTS
    cpu_p = percentile(cpu, KRR_CPU_PERCENTILE) if cpu else 0.0
    max_mem = max(memory, default=0.0)
    mem = max_mem * (1 + KRR_MEMORY_BUFFER)
    if kills:
        all_mem = _clean(usage.memory)
        base = current.memory_limit or max(_usage_at_oom(all_mem, k, None) for k in kills)
        mem = max(mem, base * (1 + KRR_OOM_BUMP))
    return KrrEstimate(cpu_p, mem, max_mem, len(cpu), len(memory), len(kills), enough)


def vpa_recommend(
    usage: Usage,
    current: CurrentResources | None = None,
    *,
    half_life: float = VPA_HALF_LIFE,
    peak_interval: float = VPA_PEAK_INTERVAL,
    history: float = KRR_HISTORY,
) -> VpaEstimate:
    """The VPA recommender's target: every sample weighs ``decay_weight`` (half-life
    24 h); CPU = p90 of the weighted usage, memory = p90 of the weighted peaks of
    each ``peak_interval`` (an OOM kill replaces its interval's peak by the usage at
    the kill + max(100 MiB, 20%)); both plus a 15% margin. ``oom_bump`` is the
    largest such bump among kills within ``history``, for the limit."""
    current = current or CurrentResources()
    ref = _latest(usage)
    cpu = [(max(0.0, v), decay_weight(t, ref, half_life)) for t, v in _clean(usage.cpu)]
    memory = _clean(usage.memory)
    peaks: dict[int, tuple[float, float]] = {}  # interval -> (peak, its timestamp)
    for t, v in memory:
        key = int((ref - t) // peak_interval)
        if key not in peaks or v > peaks[key][0]:
            peaks[key] = (v, t)
    bump = 0.0
    for kill in usage.oom_kills:
        need = _vpa_oom_bump(_usage_at_oom(memory, kill, current.memory_limit))
        key = int((ref - kill) // peak_interval)
        if key not in peaks or need > peaks[key][0]:
            peaks[key] = (need, kill)
        if kill >= ref - history:
            bump = max(bump, need)
    cpu_t = weighted_percentile(cpu, VPA_CPU_PERCENTILE) if cpu else 0.0
    mem_t = (
        weighted_percentile(
            ((v, decay_weight(t, ref, half_life)) for v, t in peaks.values()),
            VPA_MEMORY_PERCENTILE,
        )
        if peaks
        else 0.0
    )
    return VpaEstimate(cpu_t * (1 + VPA_MARGIN), mem_t * (1 + VPA_MARGIN), bump)


def _peak_mean(samples: list[tuple[float, float]], window: float) -> float:
    """Highest mean usage over any ``window`` seconds (one sample if they are sparser):
    a burst that lasts should fit under the limit, a single noisy sample need not."""
    best, acc, lo = 0.0, 0.0, 0
    for hi, (t, v) in enumerate(samples):
        acc += v
        while samples[lo][0] <= t - window:
            acc -= samples[lo][1]
            lo += 1
        best = max(best, acc / (hi - lo + 1))
    return best


def _milli(cores: float) -> int:
    return math.ceil(cores * 1000 - 1e-6)


def _mib_up(n: float) -> int:
    return math.ceil(n / MiB - 1e-9) * MiB


def _fmt_m(milli: float) -> str:
    return f"{_milli(milli / 1000)}m"  # rounded up, as the advice is


def _fmt_mib(n: float) -> str:
    return f"{_mib_up(n) // MiB} MiB"


def _pick(
    candidates: list[tuple[float, str]], then: str = "", floor: tuple[float, str] | None = None
) -> tuple[float, str]:
    """The largest candidate and a reason naming it (plus ``then``, e.g. a rounding),
    then the others it beat. A ``floor`` is named only when it sets the value."""
    if floor is not None and floor[0] > max(v for v, _ in candidates):
        others = [w for _, w in candidates]
        return floor[0], floor[1] + then + f" (above {'; '.join(others)})"
    best = max(range(len(candidates)), key=lambda i: (candidates[i][0], -i))
    value, why = candidates[best]
    others = [w for i, (_, w) in enumerate(candidates) if i != best]
    return value, why + then + (f" (≥ {'; '.join(others)})" if others else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _oom_bump(
    usage: Usage, current: CurrentResources, kills: Sequence[float], after: str
) -> tuple[int, int, list[str]] | None:
    """Memory request and limit that OOM kills alone ask for, whatever the span of the
    samples: KRR's (the current limit + 25%, the request) and VPA's (usage at the kill
    + max(100 MiB, 20%)), whichever is larger for the limit. None without a limit or a
    sampled usage to size from (then nothing says how much the service needed)."""
    memory = _clean(usage.memory)
    if current.memory_limit:
        krr_base = float(current.memory_limit)
        krr_rule = f"KRR: the current limit {_fmt_mib(krr_base)} + 25%"
    else:
        krr_base = max(_usage_at_oom(memory, k, None) for k in kills) if memory else 0.0
        krr_rule = f"KRR: usage at the kill {_fmt_mib(krr_base)} + 25%"
    if krr_base <= 0:
        return None
    krr = krr_base * (1 + KRR_OOM_BUMP)
    used = max(_usage_at_oom(memory, k, current.memory_limit) for k in kills)
    vpa = _vpa_oom_bump(used)
    req, why_req = _pick([(krr, f"{krr_rule} = {_fmt_mib(krr)}")], floor=MEMORY_FLOOR)
    request = _mib_up(req)
    lim, why_lim = _pick(
        [
            (
                vpa,
                f"VPA OOM bump: usage at the kill {_fmt_mib(used)} + max(100 MiB, 20%) "
                f"= {_fmt_mib(vpa)}",
            ),
            (krr, f"{krr_rule} = {_fmt_mib(krr)}"),
        ]
    )
    limit = max(request, _mib_up(lim))
    return (
        request,
        limit,
        [
            f"memory request {_fmt_mib(request)} {after}: {why_req}",
            f"memory limit {_fmt_mib(limit)} {after}: {why_lim}",
        ],
    )


def recommend(
    service: str,
    usage: Usage,
    current: CurrentResources | None = None,
    *,
    min_span: float = MIN_HISTORY,
) -> Recommendation:
    """Right-sizing advice for one service from its usage history.

    Requests are the larger of KRR's and VPA's estimates (each is a credible
    figure; the larger one does not starve the service). Limits, which users
    asked for: CPU limit = the largest of p99 x 1.2, request x 2 and the highest
    5-minute mean, raised to the current limit x 1.25 when the history shows
    heavy throttling (usage was capped, so it understates demand), rounded up to
    the plan's 10m step; memory limit = the largest of request x 1.2, the highest
    working set + 15% and VPA's OOM bump (KRR's is in the request), so it is never
    below what a kill showed was needed. Nothing is advised below the 10m / 32 MiB
    floors, and the reason says when a floor set the value.

    Every reason says how much data it stands on. Fewer than ``KRR_MIN_POINTS``
    samples: no CPU advice, and memory only when OOM kills ask for more (KRR's
    limit + 25% as the request, VPA's bump for the limit): a kill is evidence on
    its own. Enough samples over less than ``min_span``: the advice is computed
    but ``provisional``.
    """
    current = current or CurrentResources()
    krr = krr_simple(usage, current)
    since = _latest(usage) - KRR_HISTORY
    span = data_span(usage, since)
    kills = sorted(k for k in usage.oom_kills if k >= since)
    over = f"from {span.length} of data" if span else "from no usage samples"
    reasons = [
        f"data: {span.length} ({span.dates}), {span.cpu_samples} CPU and "
        f"{span.memory_samples} memory samples"
        if span
        else "data: no CPU or memory samples"
    ]
    bump = None
    if kills:
        reasons.append(f"OOM kills: {len(kills)} ({format_range(kills[0], kills[-1])})")
        after = f"after {_plural(len(kills), 'OOM kill')} {over}"
        bump = _oom_bump(usage, current, kills, after)
        if bump is None:
            reasons.append(
                "no memory advice from the OOM kills: neither a memory limit nor a sampled "
                "usage says how much the service needed"
            )
    common = {
        "service": service,
        "span": span,
        "oom_kills": len(kills),
        "oom_memory": bump[:2] if bump else None,
        "current": current,
    }
    if not krr.enough_data:
        reasons.append(
            f"not enough data: KRR needs {KRR_MIN_POINTS} CPU and {KRR_MIN_POINTS} memory "
            "samples; no CPU advice" + ("" if bump else " and no memory advice")
        )
        if bump:
            reasons += bump[2]
        return Recommendation(
            cpu_request=None,
            cpu_limit=None,
            memory_request=bump[0] if bump else None,
            memory_limit=bump[1] if bump else None,
            reasons=reasons,
            enough_data=False,
            **common,  # type: ignore[arg-type]
        )
    assert span is not None  # enough samples
    provisional = span.seconds < min_span
    if provisional:
        reasons.append(
            f"provisional: {span.length} of data, less than the {format_span(min_span)} "
            "the advice needs"
        )

    vpa = vpa_recommend(usage, current)
    cpu = [(t, max(0.0, v)) for t, v in _clean(usage.cpu) if t >= since]
    half = f"half-life {format_span(VPA_HALF_LIFE)}"
    peaks = "daily" if VPA_PEAK_INTERVAL == DAY else f"{format_span(VPA_PEAK_INTERVAL)}"

    cpu_req, why = _pick(
        [
            (krr.cpu * 1000, f"KRR p95 of usage = {_fmt_m(krr.cpu * 1000)}"),
            (vpa.cpu * 1000, f"VPA p90 of decayed usage ({half}) + 15% = {_fmt_m(vpa.cpu * 1000)}"),
        ],
        floor=CPU_FLOOR,
    )
    cpu_request = max(MIN_CPU, _milli(cpu_req / 1000))
    reasons.append(f"cpu request {cpu_request}m {over}: {why}")

    p99 = percentile((v for _, v in cpu), CPU_LIMIT_PERCENTILE) * 1000
    burst = _peak_mean(cpu, CPU_BURST_WINDOW) * 1000
    limit_candidates = [
        (
            p99 * CPU_LIMIT_MARGIN,
            f"p99 of usage {_fmt_m(p99)} x {CPU_LIMIT_MARGIN:g} = {_fmt_m(p99 * CPU_LIMIT_MARGIN)}",
        ),
        (
            cpu_request * CPU_LIMIT_REQUEST_FACTOR,
            f"request x {CPU_LIMIT_REQUEST_FACTOR:g} = {_fmt_m(cpu_request * CPU_LIMIT_REQUEST_FACTOR)}",
        ),
        (burst, f"highest {CPU_BURST_WINDOW / 60:g}-minute mean = {_fmt_m(burst)}"),
    ]
    throttle = [v for t, v in _clean(usage.cpu_throttling) if t >= since]
    if throttle and current.cpu_limit is not None:
        p90_throttled = percentile(throttle, 90)
        if p90_throttled > THROTTLED:
            bumped = current.cpu_limit * THROTTLE_BUMP
            limit_candidates.append(
                (bumped, f"current limit {current.cpu_limit}m + 25% = {_fmt_m(bumped)}, throttled")
            )
            reasons.append(
                f"throttling: p90 of the throttled-period ratio is {p90_throttled:.0%} "
                f"(> {THROTTLED:.0%}) {over}, so usage was capped at the limit and understates "
                "demand"
            )
    raw_limit = max(cpu_request, _milli(max(c for c, _ in limit_candidates) / 1000))
    cpu_limit = math.ceil(raw_limit / CPU_LIMIT_STEP) * CPU_LIMIT_STEP
    rounded = f", rounded up to the plan's {CPU_LIMIT_STEP}m step" if cpu_limit != raw_limit else ""
    _, why = _pick(limit_candidates, rounded)
    reasons.append(f"cpu limit {cpu_limit}m {over}: {why}")

    krr_rule = "max working set + 15%"
    if krr.memory > krr.max_memory * (1 + KRR_MEMORY_BUFFER):
        krr_rule = "after an OOM kill, " + (
            f"the current limit {_fmt_mib(current.memory_limit)} + 25%"
            if current.memory_limit
            else "usage at the kill + 25%"
        )
    mem_req, why = _pick(
        [
            (krr.memory, f"KRR {krr_rule} = {_fmt_mib(krr.memory)}"),
            (
                vpa.memory,
                f"VPA p90 of decayed {peaks} peaks ({half}) + 15% = {_fmt_mib(vpa.memory)}",
            ),
        ],
        floor=MEMORY_FLOOR,
    )
    memory_request = max(MIN_MEMORY, _mib_up(mem_req))
    reasons.append(f"memory request {_fmt_mib(memory_request)} {over}: {why}")

    mem_candidates = [
        (
            memory_request * MEMORY_LIMIT_HEADROOM,
            f"request x {MEMORY_LIMIT_HEADROOM:g} = "
            f"{_fmt_mib(memory_request * MEMORY_LIMIT_HEADROOM)}",
        ),
        (
            krr.max_memory * (1 + KRR_MEMORY_BUFFER),
            f"max working set {_fmt_mib(krr.max_memory)} + 15% = "
            f"{_fmt_mib(krr.max_memory * (1 + KRR_MEMORY_BUFFER))}",
        ),
    ]
    if vpa.oom_bump:
        mem_candidates.append(
            (
                vpa.oom_bump,
                f"VPA OOM bump, usage at the kill + max(100 MiB, 20%) = {_fmt_mib(vpa.oom_bump)}",
            )
        )
    mem_lim, why = _pick(mem_candidates)
    memory_limit = max(memory_request, _mib_up(mem_lim))
    reasons.append(f"memory limit {_fmt_mib(memory_limit)} {over}: {why}")
    return Recommendation(
        cpu_request=cpu_request,
        cpu_limit=cpu_limit,
        memory_request=memory_request,
        memory_limit=memory_limit,
        reasons=reasons,
        enough_data=True,
        provisional=provisional,
        **common,  # type: ignore[arg-type]
    )


def recommend_all(
    usage: Mapping[str, Usage],
    current: Mapping[str, CurrentResources] | None = None,
    *,
    min_span: float = MIN_HISTORY,
) -> list[Recommendation]:
    """``recommend`` for every service, in name order."""
    current = current or {}
    return [
        recommend(name, usage[name], current.get(name), min_span=min_span) for name in sorted(usage)
    ]
