"""One cron run of ``vots-ops report``: sample, rate against the last sample, store.

This is the library entry point behind the CLI; it never sleeps (rates come
from the previous stored sample, like sysstat's ``sa1``) and never raises for a
missing Docker engine (host figures still count).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.report.history import History, Point

# Findings that `--fail-on over-limit` turns into exit 1.
MEMORY_NEAR_LIMIT_PCT = 90.0
THROTTLED_RATIO = 0.25


@dataclass(frozen=True)
class Finding:
    """Something an operator should look at, with the figure that triggered it."""

    kind: str  # "over-limit" | "anomaly"
    scope: str
    message: str


@dataclass
class ReportRun:
    sample: dict[str, Any]
    rates: dict[str, Any]
    sample_id: int | None
    db: Path | None
    findings: list[Finding] = field(default_factory=list)
    # service -> what `plan` gave each replica (cpu/memory limit and reservation)
    planned: dict[str, dict[str, Any]] = field(default_factory=dict)


def planned_limits(stack_path: Path) -> dict[str, dict[str, Any]]:
    """What the capacity planner gives each service of the stack, per replica."""
    from ops.plan import fit
    from ops.stack import load_stack

    plan = fit(load_stack(stack_path))
    return {
        a.name: {
            "cpu_limit": a.cpu_limit / 1000,
            "cpu_reservation": a.cpu_reservation / 1000,
            "memory_limit": a.mem_limit,
            "memory_reservation": a.mem_reservation,
            "replicas": a.replicas,
        }
        for a in plan.allocations
    }


def _points(sample: dict[str, Any], rates: dict[str, Any]) -> Iterator[Point]:
    host = sample["host"]
    mem = host["memory"]
    yield Point("host", "memory_used_bytes", float(mem["used"]))
    if mem["total"]:
        yield Point(
            "host", "memory_used_pct", 100.0 * (mem["total"] - mem["available"]) / mem["total"]
        )
    yield Point("host", "swap_used_bytes", float(host["swap"]["used"]))
    yield Point("host", "load1", float(host["load_avg"][0]))
    for disk in host["disks"]:
        yield Point("host", f"disk_used_pct:{disk['mountpoint']}", float(disk["percent"]))
    hr = rates.get("host") or {}
    for key in (
        "cpu_pct",
        "iowait_pct",
        "disk_read_Bps",
        "disk_write_Bps",
        "net_rx_Bps",
        "net_tx_Bps",
    ):
        if hr.get(key) is not None:
            yield Point("host", key, float(hr[key]))
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
            if c.get(key) is not None:
                yield Point(scope, key, float(c[key]))


def _findings(rates: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for c in rates.get("containers") or []:
        scope = c["name"]
        mem = c.get("mem_pct_of_limit")
        if mem is not None and mem >= MEMORY_NEAR_LIMIT_PCT:
            out.append(Finding("over-limit", scope, f"memory at {mem:.0f}% of its limit"))
        throttled = c.get("throttled_ratio")
        if throttled is not None and throttled >= THROTTLED_RATIO:
            out.append(
                Finding("over-limit", scope, f"CPU-throttled in {100 * throttled:.0f}% of periods")
            )
        if c.get("oom_kills"):
            out.append(
                Finding("over-limit", scope, f"{c['oom_kills']} OOM kill(s) since the last sample")
            )
    return out


# The cron path judges the figures people act on, over the last two hours: the
# detector re-scores its window for every call, so this bounds a run's cost
# (about 3 + 2 x containers series of <= 120 points).
ANOMALY_LOOKBACK_S = 2 * 3600.0
ANOMALY_METRICS = frozenset(
    {"cpu_pct", "memory_used_bytes", "memory_used_pct", "load1", "mem_usage"}
)


def _anomalies(history: History, host: str, ts: float, points: list[Point]) -> list[Finding]:
    """Judge this run's key points against each metric's own recent history."""
    from ops.report.anomalies import detect_anomalies

    out: list[Finding] = []
    for point in points:
        if point.metric not in ANOMALY_METRICS:
            continue
        series = history.series(point.scope, point.metric, since=ts - ANOMALY_LOOKBACK_S, host=host)
        for a in detect_anomalies(series):
            if a.ts == ts:
                scope = point.scope.removeprefix("container:")
                out.append(
                    Finding(
                        "anomaly",
                        scope,
                        f"{point.metric} {a.value:.4g} is {a.direction} from its usual {a.expected:.4g}",
                    )
                )
    return out


def take_sample(db: Path | None, *, docker: bool = True) -> ReportRun:
    """Sample now, compute rates from the previous stored sample, store this one.

    ``db=None`` samples without history (rates then say "first sample").
    """
    from ops.report.rates import rates as rates_between
    from ops.report.sample import sample

    cur = sample(docker=docker)
    hostname = cur["host"]["hostname"]
    if db is None:
        rates = rates_between(None, cur)
        return ReportRun(cur, rates, None, None, _findings(rates))
    with History(db) as history:
        prev = history.previous(hostname)
        rates = rates_between(prev[1] if prev else None, cur)
        points = list(_points(cur, rates))
        stored = cur
        if (
            prev
            and not cur["containers"]
            and prev[1].get("containers")
            and (not docker or cur.get("docker_error"))
        ):
            # A host-only run (--no-docker, engine down) must not hide the last
            # container counters: the next full run rates against those.
            stored = {**cur, "containers": prev[1]["containers"], "containers_carried": True}
        sample_id = history.record(cur["time"], hostname, stored, points)
        anomalies = _anomalies(history, hostname, cur["time"], points)
    return ReportRun(cur, rates, sample_id, Path(db), _findings(rates) + anomalies)


def measure(prev: dict[str, Any] | None, *, docker: bool = True) -> ReportRun:
    """Sample now and rate against ``prev`` (a sample kept in memory), judging the
    findings without any history: what ``report --interval`` and ``report serve``
    without ``--db`` do between their own samples."""
    from ops.report.rates import rates as rates_between
    from ops.report.sample import sample

    cur = sample(docker=docker)
    rates = rates_between(prev, cur)
    return ReportRun(cur, rates, None, None, _findings(rates))


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
