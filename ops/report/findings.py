"""Findings: what a person should act on, judged from one run, and said once.

``judge`` turns one run's rates into findings (a container near its memory
limit, throttled, OOM-killed or restarting) and the checks it found clear;
``anomaly_findings`` adds a metric breaking from its own recent behaviour.
``track`` carries them across runs, as Alertmanager does for alerts: a finding
is reported when it starts, when it gets worse, and again every
``repeat_interval`` while it lasts (Alertmanager's default is 4 h), and once
more when it resolves; in between a cron run stays silent. The state lives in
the history (``History.update_findings``), so overlapping runs agree.

Two shapes of finding:

* *levels* (memory, throttling) hold while the figure stays over its threshold
  and resolve when it drops below a lower one (hysteresis: a container
  hovering at 89-91% of its limit does not start and resolve every minute);
* *events* (OOM kills, restarts, anomalies) fire on the run that saw them; an
  episode resolves after ``resolve_after`` without a new one, and gets worse
  when its running total reaches the next power of ten (1, 10, 100 kills).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ops.report.history import FindingEvent, FindingState

if TYPE_CHECKING:
    from ops.report.rates import Rates
from ops.units import format_bytes, format_duration, format_utc

KINDS = ("over-limit", "restart", "anomaly")
#: ``--fail-on over-limit``: memory at or above this share of its limit ...
MEMORY_NEAR_LIMIT_PCT = 90.0
#: ... until it is back below this one.
MEMORY_CLEAR_PCT = 85.0
#: Throttled in at least this share of CFS periods ...
THROTTLED_RATIO = 0.25
#: ... until below this share.
THROTTLED_CLEAR = 0.15
#: Alertmanager's default repeat_interval.
REPEAT_INTERVAL_S = 4 * 3600.0
#: An event finding resolves after this long without a new event.
RESOLVE_AFTER_S = 15 * 60.0
EVENT_CHECKS = frozenset({"oom", "restarts"})


@dataclass(frozen=True)
class Finding:
    """Something an operator should look at, with the figure that triggered it.

    ``kind`` is what ``--fail-on`` selects; ``check`` names the test within the
    scope (``memory``, ``throttling``, ``oom``, ``restarts`` or an anomaly's
    metric); ``level`` orders severities of one check; ``count`` is how many
    events this run saw (0 for levels). ``state``, ``since`` and ``notify`` are
    set by ``track``: new | worse | repeat | ongoing, when it began, and whether
    a quiet cron run says it.
    """

    kind: str
    scope: str
    check: str
    message: str
    value: float = 0.0
    level: int = 1
    count: float = 0.0
    state: str = "new"
    since: float | None = None
    notify: bool = True

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.scope}/{self.check}"

    @property
    def event(self) -> bool:
        return self.kind == "anomaly" or self.check in EVENT_CHECKS

    def line(self) -> str:
        """The finding as one line: ``over-limit agent-1: memory at 93% ... (new)``."""
        since = self.since if self.state in ("worse", "repeat", "ongoing") else None
        return _line(self.kind, self.scope, self.message, self.state, since)


def _line(kind: str, scope: str, message: str, state: str, since: float | None = None) -> str:
    """How a finding reads on one line, in cron's mail and on the terminal alike."""
    if state == "resolved":
        return f"{kind} {scope}: {message}"
    tag = {"repeat": "still"}.get(state, state)
    if since is not None:
        tag += f", since {format_utc(since)}"
    return f"{kind} {scope}: {message} ({tag})"


@dataclass(frozen=True)
class Judgement:
    """One run's findings and the checks it saw clear (``kind/scope/check`` keys);
    ``scopes`` are the containers it could judge at all (the engine answered)."""

    findings: list[Finding]
    clear: frozenset[str]
    scopes: frozenset[str] | None  # None: containers were not sampled this run


def _times(n: float) -> str:
    n = int(n)
    return "once" if n == 1 else f"{n} times"


def _step(value: float, steps: Iterable[float]) -> int:
    """1 + how many of the ascending ``steps`` beyond the first ``value`` reaches."""
    return sum(1 for s in steps if value >= s)


def judge(rates: Rates, *, containers_sampled: bool = True) -> Judgement:
    """Findings of one run's container rates, and the checks found clear."""
    findings: list[Finding] = []
    clear: set[str] = set()

    def key(kind: str, scope: str, check: str) -> str:
        return f"{kind}/{scope}/{check}"

    for c in rates.get("containers") or []:
        scope = c.get("name") or str(c.get("id", "?"))[:12]
        mem = c.get("mem_pct_of_limit")
        if mem is not None and mem >= MEMORY_NEAR_LIMIT_PCT:
            used, limit = c.get("mem_usage"), c.get("memory_limit_bytes")
            detail = f" ({format_bytes(used)} of {format_bytes(limit)})" if used and limit else ""
            findings.append(
                Finding(
                    "over-limit",
                    scope,
                    "memory",
                    f"memory at {mem:.0f}% of its limit{detail}",
                    mem,
                    _step(mem, (MEMORY_NEAR_LIMIT_PCT, 95.0, 99.0)),
                )
            )
        elif (mem is not None and mem < MEMORY_CLEAR_PCT) or (
            c.get("memory_limit_bytes") is None and c.get("mem_usage") is not None
        ):
            clear.add(key("over-limit", scope, "memory"))
        throttled = c.get("throttled_ratio")
        if throttled is not None and throttled >= THROTTLED_RATIO:
            findings.append(
                Finding(
                    "over-limit",
                    scope,
                    "throttling",
                    f"CPU-throttled in {100 * throttled:.0f}% of periods",
                    throttled,
                    _step(throttled, (THROTTLED_RATIO, 0.5, 0.75)),
                )
            )
        elif throttled is not None and throttled < THROTTLED_CLEAR:
            clear.add(key("over-limit", scope, "throttling"))
        ooms, restarts = c.get("oom_kills"), c.get("restarts")
        if ooms:
            text = f"OOM-killed {_times(ooms)} since the last sample"
            if restarts:
                text += f", restarted {_times(restarts)}"
            if c.get("state") not in (None, "running"):
                text += f"; now {c['state']}"
            limit = c.get("memory_limit_bytes")
            if limit:
                text += f" (memory limit {format_bytes(limit)})"
            findings.append(Finding("over-limit", scope, "oom", text, ooms, count=ooms))
        elif ooms == 0:
            clear.add(key("over-limit", scope, "oom"))
        if restarts:
            text = f"restarted {_times(restarts)} since the last sample"
            if ooms:
                text += " (OOM-killed)"
            elif c.get("state") not in (None, "running") and c.get("exit_code") is not None:
                # The engine keeps the last exit's code only until the next start.
                text += f" (exit code {c['exit_code']})"
            if c.get("state") not in (None, "running"):
                text += f"; now {c['state']}"
            findings.append(Finding("restart", scope, "restarts", text, restarts, count=restarts))
        elif restarts == 0:
            clear.add(key("restart", scope, "restarts"))
    scopes = None
    if containers_sampled:
        scopes = frozenset(
            c.get("name") or str(c.get("id", "?"))[:12] for c in rates.get("containers") or []
        )
    return Judgement(findings, frozenset(clear), scopes)


def _event_level(total: float) -> int:
    return 1 + int(math.log10(max(1.0, total)))


def track(
    states: Mapping[str, FindingState],
    judged: Judgement,
    now: float,
    *,
    says: Collection[str] | None = None,
    repeat_interval: float = REPEAT_INTERVAL_S,
    resolve_after: float = RESOLVE_AFTER_S,
) -> tuple[dict[str, FindingState], list[FindingEvent], list[Finding]]:
    """The new states, the events this run says and its findings with their state:
    those it saw, and those still open from earlier runs (state "ongoing").

    ``says`` are the kinds this run reports (a quiet cron run's ``--fail-on``;
    None: every kind). Only a run that says a kind moves what was said about
    it: an operator's interactive run, or ``serve`` storing into the same
    history, sees the findings but leaves cron's news to cron. A finding that
    resolves while no such run is there stays, marked resolved, until one says
    so; one that was never said goes without a word.

    Durations use ``abs()``: after a clock step a finding is reported once
    more rather than never again.
    """

    def said(kind: str) -> bool:
        return says is None or kind in says

    new_states: dict[str, FindingState] = {}
    events: list[FindingEvent] = []
    findings: list[Finding] = []
    firing = set()
    for f in judged.findings:
        firing.add(f.key)
        fresh = f.key not in states
        s = states.get(f.key) or FindingState(f.key, f.kind, f.scope, now, now, 0.0, 0, 0.0, "")
        s = replace(s, last_seen=now, clear_since=None, resolved=None, total=s.total + f.count)
        level = _event_level(s.total) if f.event else f.level
        if not said(f.kind):
            state = "new" if fresh else "ongoing"
        elif s.notified == 0:
            state = "new"
        elif level > s.level:
            state = "worse"
        elif abs(now - s.notified) >= repeat_interval:
            state = "repeat"
        else:
            state = "ongoing"
        notify = said(f.kind) and state != "ongoing"
        if notify:
            s.notified = now
            # A finding that improved keeps its peak level, so a flapping
            # 95%-91%-95% is not "worse" every other minute.
            s.level = max(s.level, level)
        message = f.message
        if f.event and s.total > f.count:
            message += f"; {int(s.total)} in the last {format_duration(now - s.since)}"
        s.message = message
        new_states[f.key] = s
        findings.append(replace(f, message=message, state=state, since=s.since, notify=notify))
        if notify:
            events.append(FindingEvent(now, f.key, f.kind, f.scope, state, message))
    for key, s in states.items():
        if key in firing:
            continue
        if s.resolved is None:
            gone = judged.scopes is not None and s.scope != "host" and s.scope not in judged.scopes
            event = s.kind == "anomaly" or key.rsplit("/", 1)[-1] in EVENT_CHECKS
            quiet_long = abs(now - s.last_seen) >= resolve_after
            if gone or (key in judged.clear and (not event or quiet_long)):
                why = "the container is gone" if gone else "resolved"
                s = replace(
                    s,
                    resolved=now,
                    message=f"{why} after {format_duration(now - s.since)} (was: {s.message})",
                )
        if s.resolved is not None:
            if s.notified == 0:
                continue  # never said: nothing to take back
            if said(s.kind):
                events.append(FindingEvent(now, key, s.kind, s.scope, "resolved", s.message))
                continue
            new_states[key] = s  # to be said by the next run that reports this kind
            continue
        if key in judged.clear and s.clear_since is None:
            s = replace(s, clear_since=now)
        new_states[key] = s
        # Still open (a crash loop between two kills, a figure in the hysteresis
        # band, a figure this run could not read): a finding of this run too, so
        # the exit status holds until it resolves, but nothing new to say.
        findings.append(
            Finding(
                s.kind,
                s.scope,
                key.rsplit("/", 1)[-1],
                f"{s.message} (last seen {format_utc(s.last_seen)})",
                level=s.level,
                state="ongoing",
                since=s.since,
                notify=False,
            )
        )
    return new_states, events, findings


def event_line(event: FindingEvent) -> str:
    """One line for cron's mail: ``over-limit agent-1: memory at 93% ... (new)``."""
    return _line(event.kind, event.scope, event.message, event.state)


# -- anomalies ---------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """How one metric is judged for anomalies: which way hurts, and the smallest
    change (in the metric's unit) that matters in practice."""

    label: str
    unit: str  # "%" | "bytes" | "ratio" | ""
    hurts: str  # "up" | "down"
    floor: float


MiB = 1024**2
#: The figures the cron path judges (each re-scores its window every run, so the
#: set is kept small): up hurts for CPU, memory, load and throttling.
WATCHED: dict[str, Watch] = {
    "cpu_pct": Watch("CPU", "%", "up", 10.0),
    "memory_used_pct": Watch("memory", "%", "up", 5.0),
    "load1": Watch("load", "", "up", 1.0),
    "mem_usage": Watch("memory", "bytes", "up", 64 * MiB),
    "throttled_ratio": Watch("CPU throttling", "ratio", "up", 0.10),
}


def human(value: float, unit: str) -> str:
    """A figure in the unit people read it in."""
    if unit == "%":
        return f"{value:.1f}%"
    if unit == "ratio":
        return f"{100 * value:.0f}%"
    if unit == "bytes":
        return format_bytes(int(max(0.0, value)))
    return f"{value:.2f}"


def anomaly_finding(
    scope: str, metric: str, value: float, expected: float, score: float
) -> Finding:
    watch = WATCHED.get(metric, Watch(metric, "", "up", 0.0))
    way = "up" if value > expected else "down"
    # Over a series that never moved, the robust scale is its floor and z is
    # astronomical: past 1000 the number says nothing more.
    z = f"robust z {score:.0f}" if score < 1000 else "robust z > 1000"
    message = (
        f"{watch.label} {human(value, watch.unit)} is {way} from its usual "
        f"{human(expected, watch.unit)} ({z})"
    )
    return Finding("anomaly", scope, metric, message, score, count=1.0)
