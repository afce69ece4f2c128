"""One cron run of ``vots-ops report``: sample, rate against the last sample, store, judge.

This is the library entry point behind the CLI. It never sleeps (rates come
from the previous stored sample, like sysstat's ``sa1``), never raises for a
missing Docker engine (host figures still count) and never raises for a damaged
row of the history (it is skipped, with a line in ``warnings``).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from ops.report.findings import (
    REPEAT_INTERVAL_S,
    RESOLVE_AFTER_S,
    WATCHED,
    Finding,
    Judgement,
    anomaly_finding,
    judge,
    track,
)
from ops.report.history import FindingEvent, History, Point

if TYPE_CHECKING:
    from ops.report.rates import ContainerRates, Rates
    from ops.report.sample import ContainerCounters, Sample


class Planned(TypedDict):
    """What ``plan`` gives each replica of a service (``plan --format json``'s units)."""

    cpu_limit_millicores: int
    cpu_reservation_millicores: int
    memory_limit_bytes: int
    memory_reservation_bytes: int
    replicas: int


@dataclass
class ReportRun:
    """What one run measured, found and said.

    ``findings`` carry their state across runs (``Finding.state``); ``events``
    are what a quiet cron run reports (new, worse, repeat, resolved; empty
    without a history, where every finding is new). ``clock`` is the history's
    verdict on this run's wall clock ("ok", "ahead", "behind"), ``clock_note``
    the line that says so and ``clock_note_is_new`` whether it is news.
    ``warnings`` are damaged rows skipped, one line each.
    """

    sample: Sample
    rates: Rates
    sample_id: int | None
    db: Path | None
    findings: list[Finding] = field(default_factory=list)
    # service -> what `plan` gives each replica (millicores, bytes); see planned_limits
    planned: dict[str, Planned] = field(default_factory=dict)
    project: str | None = None
    events: list[FindingEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    clock: str = "ok"
    clock_note: str | None = None
    clock_note_is_new: bool = False
    # "down" when this run found the engine unusable and the previous one did not,
    # "back" for the reverse: what a quiet run says once (None: nothing changed).
    docker_news: str | None = None

    def planned_for(self, container: ContainerCounters | ContainerRates) -> Planned | None:
        """The plan's figures for a container of this stack: its Compose project
        label must be the stack's project and its service label a service of it
        (another project's ``web`` is not this stack's ``web``)."""
        if not self.planned or container.get("project") != self.project:
            return None
        return self.planned.get(container.get("service") or "")


def planned_limits(stack_path: Path) -> tuple[str, dict[str, Planned]]:
    """The stack's Compose project, and what the capacity planner gives each of its
    services per replica (millicores and bytes, as ``plan --format json`` says)."""
    from ops.plan import fit
    from ops.stack import load_stack

    loaded = load_stack(stack_path)
    plan = fit(loaded)
    return loaded.stack.project, {
        a.name: {  # Planned
            "cpu_limit_millicores": a.cpu_limit,
            "cpu_reservation_millicores": a.cpu_reservation,
            "memory_limit_bytes": a.mem_limit,
            "memory_reservation_bytes": a.mem_reservation,
            "replicas": a.replicas,
        }
        for a in plan.allocations
    }


def _points(sample: Sample, rates: Rates) -> Iterator[Point]:
    """The figures of one run that go into the series; none that is not a finite
    number (a damaged previous sample can make a rate infinite)."""

    def point(scope: str, metric: str, value: Any) -> Iterator[Point]:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value):
            yield Point(scope, metric, float(value))

    host = sample["host"]
    mem = host["memory"]
    yield from point("host", "memory_used_bytes", mem["used"])
    if mem["total"]:
        yield from point(
            "host", "memory_used_pct", 100.0 * (mem["total"] - mem["available"]) / mem["total"]
        )
    yield from point("host", "swap_used_bytes", host["swap"]["used"])
    yield from point("host", "load1", host["load_avg"][0])
    for disk in host["disks"]:
        yield from point("host", f"disk_used_pct:{disk['mountpoint']}", disk["percent"])
    hr = rates.get("host") or {}
    for key in (
        "cpu_pct",
        "iowait_pct",
        "disk_read_Bps",
        "disk_write_Bps",
        "net_rx_Bps",
        "net_tx_Bps",
    ):
        yield from point("host", key, hr.get(key))
    for c in rates.get("containers") or []:
        scope = f"container:{c['name']}"
        for key in (
            "cpu_pct",
            "cpu_pct_of_limit",
            "throttled_ratio",
            "mem_usage",
            "mem_pct_of_limit",
            "net_rx_Bps",
            "net_tx_Bps",
            "restarts",
            "oom_kills",
        ):
            yield from point(scope, key, c.get(key))


# The cron path judges the figures people act on, over the last two hours: the
# detector re-scores its window for every call, so this bounds a run's cost
# (about 3 + 2 x containers series of <= 120 points).
ANOMALY_LOOKBACK_S = 2 * 3600.0


def _anomalies(
    history: History, host: str, ts: float, points: list[Point]
) -> tuple[list[Finding], set[str]]:
    """This run's watched points judged against each metric's own recent history:
    the findings, and the keys judged clear."""
    from ops.report.anomalies import MIN_HISTORY, WINDOW, detect_anomalies, may_be_anomalous

    found: list[Finding] = []
    clear: set[str] = set()
    since = ts - ANOMALY_LOOKBACK_S
    # First the last WINDOW samples of every watched series, in one query: enough
    # to tell which last points could be news at all (usually none) ...
    recent_start = history.since_last(host, WINDOW + 1)
    windows = history.recent(host, WATCHED, max(since, recent_start or since))
    for point in points:
        watch = WATCHED.get(point.metric)
        if watch is None:
            continue
        series = windows.get((point.scope, point.metric), [])
        scope = point.scope.removeprefix("container:")
        hits = []
        if may_be_anomalous(series, direction=watch.hurts, min_change=watch.floor):
            # ... then the whole window for the detector, for those only.
            series = history.series(point.scope, point.metric, since=since, host=host)
            hits = [
                a
                for a in detect_anomalies(series, direction=watch.hurts, min_change=watch.floor)
                if a.ts == ts
            ]
        for a in hits:
            found.append(anomaly_finding(scope, point.metric, a.value, a.expected, a.score))
        if not hits and len(series) > MIN_HISTORY:
            clear.add(f"anomaly/{scope}/{point.metric}")
    return found, clear


def take_sample(
    db: Path | None,
    *,
    docker: bool = True,
    says: Collection[str] | None = None,
    repeat_interval: float = REPEAT_INTERVAL_S,
    resolve_after: float = RESOLVE_AFTER_S,
) -> ReportRun:
    """Sample now, compute rates from the previous stored sample, store this one,
    judge the findings and carry their state.

    ``says``: the finding kinds this run reports (cron's ``--fail-on`` under
    ``--quiet``; None: all); only such a run moves what was said (see
    ``findings.track``), so ``events`` are exactly what it must print.
    ``db=None`` samples without history (rates then say "first sample", and every
    finding is new).
    """
    from ops.report.rates import rates as rates_between
    from ops.report.rates import sample_problem
    from ops.report.sample import sample

    if db is None:
        cur = sample(docker=docker)
        rates = rates_between(None, cur)
        judged = judge(rates, containers_sampled=_sampled(cur, docker))
        return ReportRun(cur, rates, None, None, judged.findings)
    hostname = socket.gethostname()
    with History(db) as history:
        prev = history.previous(hostname, check=sample_problem)
        # sample_problem has checked the stored sample's shape: it is a Sample.
        before = cast("Sample", prev.raw) if prev else None
        follow = [c["id"] for c in before.get("containers") or []] if before else []
        cur = sample(docker=docker, follow=follow)
        try:
            rates = rates_between(before, cur)
        except (
            TypeError,
            KeyError,
            ValueError,
            AttributeError,
            IndexError,
            ZeroDivisionError,
        ) as exc:
            # A stored sample that passed the shape check but still does not add up.
            assert prev is not None
            history.mark_unreadable(prev.id, f"rates from it failed: {exc!r}"[:200])
            rates = rates_between(None, cur)
        points = list(_points(cur, rates))
        stored = cur
        if (
            before
            and not cur["containers"]
            and before.get("containers")
            and (not docker or cur.get("docker_error"))
        ):
            # A host-only run (--no-docker, engine down) must not hide the last
            # container counters: the next full run rates against those.
            stored = {**cur, "containers": before["containers"], "containers_carried": True}
        recorded = history.record(
            cur["time"],
            hostname,
            stored,
            points,
            boot_id=cur["host"].get("boot_id"),
            mono=cur["mono"],
        )
        judged = judge(rates, containers_sampled=_sampled(cur, docker))
        if recorded.clock == "ok":
            anomalies, calm = _anomalies(history, hostname, cur["time"], points)
            judged = Judgement(judged.findings + anomalies, judged.clear | calm, judged.scopes)
        outcome: dict[str, Any] = {}

        def update(states: dict[str, Any]) -> tuple[dict[str, Any], list[FindingEvent]]:
            new, events, findings = track(
                states,
                judged,
                cur["time"],
                says=says,
                repeat_interval=repeat_interval,
                resolve_after=resolve_after,
            )
            outcome["findings"] = findings
            return new, events

        events = history.update_findings(hostname, update)
        news = None
        if docker:
            was_down = bool(prev and prev.raw.get("docker_error"))
            is_down = bool(cur.get("docker_error"))
            news = (
                "down" if is_down and not was_down else "back" if was_down and not is_down else None
            )
        return ReportRun(
            cur,
            rates,
            recorded.sample_id,
            Path(db),
            outcome["findings"],
            events=events,
            warnings=list(history.warnings),
            clock=recorded.clock,
            clock_note=recorded.note,
            clock_note_is_new=recorded.note_is_new,
            docker_news=news,
        )


def _sampled(cur: Sample, docker: bool) -> bool:
    """Whether this run saw the engine's containers (so a missing one is gone)."""
    return docker and not cur.get("docker_error")


def measure(prev: Sample | None, *, docker: bool = True) -> ReportRun:
    """Sample now and rate against ``prev`` (a sample kept in memory), judging the
    findings without any history: what ``report --interval`` and ``report serve``
    without ``--db`` do between their own samples."""
    from ops.report.rates import rates as rates_between
    from ops.report.sample import sample

    follow = [c["id"] for c in prev["containers"]] if prev else []
    cur = sample(docker=docker, follow=follow)
    rates = rates_between(prev, cur)
    judged = judge(rates, containers_sampled=_sampled(cur, docker))
    return ReportRun(cur, rates, None, None, judged.findings)


def live(interval: float, *, docker: bool = True, count: int | None = None) -> Iterator[ReportRun]:
    """Samples every ``interval`` seconds, rates from the one before (kept in memory,
    not in the history): the engine behind ``report --interval``."""
    import time

    prev = None
    n = 0
    while count is None or n < count:
        start = time.monotonic()
        run = measure(prev, docker=docker)
        yield run
        prev = run.sample
        n += 1
        if count is not None and n >= count:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - start)))
