"""Right-sizing advice from the history, and the file that carries it to ``plan``.

``vots-ops report recommend --format yaml`` writes a recommendations file;
``vots-ops plan --recommendations FILE`` applies it: each service's
``resources.cpu`` and ``resources.memory`` bounds become the advised request
(min) and limit (max), and the capacity planner fits them to the VM as usual.
When fitting gives a service less than its advised limit (the VM is full), the
plan says so per service (``advice_in_plan``): advice is never overridden silently.

"Now" is the newest trusted sample of the history, never this run's clock, so a
snapshot copied off a VM last week gives the same advice today.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.errors import OpsError, SpecError
from ops.report.history import History
from ops.report.rightsizing import (
    DAY,
    MIN_HISTORY,
    CurrentResources,
    Recommendation,
    Usage,
    format_range,
    format_span,
    recommend_all,
)

HISTORY_S = 14 * DAY  # KRR's window


class NoAdviceData(OpsError):
    """The history holds nothing to advise on (no container samples in the window)."""


def _service_of(container: Mapping[str, Any]) -> str:
    return str(container.get("service") or container["name"])


def usage_by_service(
    history: History,
    *,
    host: str | None = None,
    since: float | None = None,
    until: float | None = None,
    project: str | None = None,
) -> tuple[dict[str, Usage], dict[str, CurrentResources]]:
    """Per service, every replica's samples pooled: limits apply per replica, so the
    distribution of one replica's usage is what the advice must cover. An OOM-kill
    sample counting k kills gives k kill timestamps.

    Services are told apart by Compose project as well as name: with ``project``
    only that project's containers count; without it, a service name used by
    several projects is advised per project, as ``PROJECT/SERVICE`` (which the
    recommendations file keeps out: ``plan`` needs one stack's names)."""
    hosts = [host] if host else history.hosts()
    containers: dict[str, dict[str, Any]] = {}
    for h in hosts:
        latest = history.previous(h)
        if latest is None:
            continue
        for c in latest.raw.get("containers") or []:
            if isinstance(c, dict) and c.get("name"):
                containers[c["name"]] = c
    # Containers seen in the history but gone now still count for their service.
    names = {
        scope.removeprefix("container:")
        for scope in history.scopes(host)
        if scope.startswith("container:")
    }
    if project is not None:
        names = {n for n in names if n in containers and containers[n].get("project") == project}
    projects: dict[str, set[str]] = defaultdict(set)
    for c in containers.values():
        projects[_service_of(c)].add(str(c.get("project")))

    def key(name: str) -> str:
        if name not in containers:
            return name
        service = _service_of(containers[name])
        if project is None and len(projects[service]) > 1:
            return f"{containers[name].get('project')}/{service}"
        return service

    cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
    mem: dict[str, list[tuple[float, float]]] = defaultdict(list)
    thr: dict[str, list[tuple[float, float]]] = defaultdict(list)
    ooms: dict[str, list[float]] = defaultdict(list)

    def series(scope: str, metric: str) -> list[tuple[float, float]]:
        return history.series(scope, metric, since=since, until=until, host=host)

    for name in sorted(names):
        service = key(name)
        scope = f"container:{name}"
        cpu[service] += [(t, v / 100.0) for t, v in series(scope, "cpu_pct")]
        mem[service] += series(scope, "mem_usage")
        thr[service] += series(scope, "throttled_ratio")
        for t, v in series(scope, "oom_kills"):
            ooms[service] += [t] * max(0, round(v))
    usage = {
        s: Usage(
            cpu=sorted(cpu[s]),
            memory=sorted(mem[s]),
            oom_kills=sorted(ooms[s]),
            cpu_throttling=sorted(thr[s]),
        )
        for s in sorted(set(cpu) | set(mem) | set(ooms))
        if cpu[s] or mem[s] or ooms[s]
    }
    current: dict[str, CurrentResources] = {}
    for name, c in containers.items():
        if name not in names:
            continue
        limits = c.get("limits") or {}
        cpus = limits.get("cpus")
        shares = limits.get("cpu_shares")
        current[key(name)] = CurrentResources(
            cpu_request=int(shares * 1000 / 1024) if shares else None,
            cpu_limit=round(cpus * 1000) if cpus else None,
            memory_request=limits.get("memory_reservation") or None,
            memory_limit=limits.get("memory") or None,
        )
    return usage, current


@dataclass(frozen=True)
class AdviceReport:
    """Advice for every service with container samples in ``[until - window, until]``."""

    db: Path
    until: float  # the newest trusted sample: "now" for the window
    window: float
    min_span: float
    recommendations: list[Recommendation]
    warnings: list[str] = field(default_factory=list)  # damaged rows the history skipped

    def values(
        self, rec: Recommendation, include_provisional: bool = False
    ) -> tuple[tuple[int, int] | None, tuple[int, int] | None] | None:
        """What goes into the recommendations file for ``rec``: ((cpu request, limit)
        or None, (memory request, limit) or None), or None for nothing at all.

        Advised services give all four; provisional ones only with
        ``include_provisional``, else just what OOM kills ask for (a kill is
        evidence whatever the span); too few samples: only an OOM bump."""
        if rec.status == "advised" or (rec.status == "provisional" and include_provisional):
            return (
                (rec.cpu_request, rec.cpu_limit),  # type: ignore[return-value]
                (rec.memory_request, rec.memory_limit),
            )
        if rec.status == "provisional" and rec.oom_memory:
            return None, rec.oom_memory
        if rec.status == "oom-bump":
            return None, (rec.memory_request, rec.memory_limit)  # type: ignore[return-value]
        return None

    def summary(self, include_provisional: bool = False) -> str:
        """One line: how many services got advice (only those count), then who did not
        and why."""
        got = []
        for r in self.recommendations:
            values = self.values(r, include_provisional)
            if values is not None:
                got.append(
                    r.service + (" (memory only, after OOM kills)" if values[0] is None else "")
                )
        parts = [f"advice for {len(got)} service(s)" + (f": {', '.join(got)}" if got else "")]
        short = [
            r.service
            for r in self.recommendations
            if r.status == "provisional" and not include_provisional
        ]
        if short:
            parts.append(
                f"provisional, under {format_span(self.min_span)} of data: {', '.join(short)} "
                "(--include-provisional adds them, --min-history sets the minimum)"
            )
        few = [r.service for r in self.recommendations if r.status == "no-advice"]
        if few:
            parts.append(f"too few samples: {', '.join(few)}")
        return "; ".join(parts)


def advise(
    history: History,
    *,
    window: float = HISTORY_S,
    min_span: float = MIN_HISTORY,
    host: str | None = None,
    project: str | None = None,
) -> AdviceReport:
    """Advice from the ``window`` up to the newest trusted sample. ``NoAdviceData``
    when the history holds no container samples there."""
    until = history.newest_ts(host)
    if until is None:
        raise NoAdviceData(f"history {history.path} has no trusted samples yet")
    since = until - window
    usage, current = usage_by_service(history, host=host, since=since, until=until, project=project)
    if not usage:
        if not any(s.startswith("container:") for s in history.scopes(host)):
            raise NoAdviceData(
                f"history {history.path} has no container samples, only the host's: "
                "`vots-ops report` records containers when it can reach the Docker engine"
            )
        raise NoAdviceData(
            f"history {history.path} has no container samples in the {format_span(window)} "
            f"up to its newest sample ({format_range(until, until)}); use a larger --days"
        )
    recs = recommend_all(usage, current, min_span=min_span)
    return AdviceReport(history.path, until, window, min_span, recs, list(history.warnings))


def _window(report: AdviceReport) -> str:
    """``window 14 d back from its newest sample (2026-12-01 10:04:30 UTC)``"""
    return (
        f"window {format_span(report.window)} back from its newest sample "
        f"({format_range(report.until, report.until)})"
    )


def _size(n: int) -> str:
    return f"{n // 1024**2}M" if n % 1024**2 == 0 else f"{-(-n // 1024**2)}M"


def recommendations_yaml(report: AdviceReport, include_provisional: bool = False) -> str:
    """The file ``plan --recommendations`` reads; reasons are comments for the reviewer."""
    lines = [
        "# Right-sizing advice from `vots-ops report recommend`; apply with",
        "# `vots-ops plan --recommendations FILE`. Values are per replica.",
        f"# History {report.db}: {_window(report)}; advice needs at least "
        f"{format_span(report.min_span)} of data.",
        "services:",
    ]
    for r in report.recommendations:
        values = report.values(r, include_provisional)
        if "/" in r.service:
            lines.append(
                f"  # {r.service}: one of several Compose projects with this service name; "
                "left out (--project NAME advises one stack's services)"
            )
            continue
        if values is None:
            why = (
                f"provisional, left out ({r.span.length if r.span else 'no'} of data, under "
                f"{format_span(report.min_span)}; --include-provisional adds it)"
                if r.status == "provisional"
                else "no advice ("
                + "; ".join(x for x in r.reasons if x.startswith("not enough"))
                + ")"
            )
            lines.append(f"  # {r.service}: {why}")
            continue
        cpu, memory = values
        lines.append(f"  {r.service}:")
        for reason in r.reasons:
            lines.append(f"    # {reason}")
        if cpu is None:
            lines.append("    # memory only: what the OOM kills ask for; CPU is left as it is")
        else:
            lines.append(f"    cpu: {{min: {cpu[0]}m, max: {cpu[1]}m}}")
        assert memory is not None
        lines.append(f"    memory: {{min: {_size(memory[0])}, max: {_size(memory[1])}}}")
    if not any(line.startswith("    ") for line in lines):  # no service got advice
        lines[lines.index("services:")] = "services: {}"
    return "\n".join(lines) + "\n"


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def recommendations_json(report: AdviceReport, include_provisional: bool = False) -> dict[str, Any]:
    """The advice as one JSON document: CPU in millicores, memory in bytes, the unit in
    every key (as ``vots-ops report --format json`` and ``plan --format json``)."""
    services = []
    for r in report.recommendations:
        c = r.current
        services.append(
            {
                "service": r.service,
                "status": r.status,
                "in_yaml": report.values(r, include_provisional) is not None,
                "cpu_request_millicores": r.cpu_request,
                "cpu_limit_millicores": r.cpu_limit,
                "memory_request_bytes": r.memory_request,
                "memory_limit_bytes": r.memory_limit,
                "data": {
                    "first": _iso(r.span.first),
                    "last": _iso(r.span.last),
                    "span_s": round(r.span.seconds, 3),
                    "cpu_samples": r.span.cpu_samples,
                    "memory_samples": r.span.memory_samples,
                }
                if r.span
                else None,
                "oom_kills": r.oom_kills,
                "current": {
                    "cpu_request_millicores": c.cpu_request,
                    "cpu_limit_millicores": c.cpu_limit,
                    "memory_request_bytes": c.memory_request,
                    "memory_limit_bytes": c.memory_limit,
                },
                "reasons": r.reasons,
            }
        )
    return {
        "db": str(report.db),
        "until": _iso(report.until),
        "window_s": report.window,
        "min_history_s": report.min_span,
        "include_provisional": include_provisional,
        "services": services,
        "summary": report.summary(include_provisional),
        "warnings": report.warnings,
    }


def advice_table(report: AdviceReport) -> Any:
    """Service x advised values x why, for people; provisional values are marked."""
    from rich.table import Table

    from ops.units import format_bytes

    title = f"right-sizing advice (per replica) from {report.db}, {_window(report)}"
    caption = None
    if any(r.status == "provisional" for r in report.recommendations):
        caption = (
            f"? provisional: less than {format_span(report.min_span)} of data, not in the yaml "
            "unless asked for (--include-provisional)"
        )
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        show_lines=True,
    )
    for col in ("service", "status", "CPU req", "CPU limit", "mem req", "mem limit", "why"):
        table.add_column(col, justify="left" if col in ("service", "status", "why") else "right")
    for r in report.recommendations:
        mark = "?" if r.status == "provisional" else ""
        table.add_row(
            r.service,
            r.status,
            f"{r.cpu_request}m{mark}" if r.cpu_request else "—",
            f"{r.cpu_limit}m{mark}" if r.cpu_limit else "—",
            format_bytes(r.memory_request) + mark if r.memory_request else "—",
            format_bytes(r.memory_limit) + mark if r.memory_limit else "—",
            "\n".join(r.reasons),
        )
    return table


# --------------------------------------------------------------------------- plan side


def load_recommendations(path: Path) -> dict[str, Any]:
    """Read and validate a recommendations file (one-line errors with file and line)."""
    from pydantic import ConfigDict

    from ops.spec import load_file, validate
    from ops.stack import CpuRange, MemoryRange, Name, _Model

    class Advice(_Model):
        cpu: CpuRange = CpuRange()
        memory: MemoryRange = MemoryRange()

    class Recommendations(_Model):
        model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
        services: dict[Name, Advice]

    data, lines = load_file(path)
    return dict(validate(Recommendations, data, lines, str(path)).services)


def apply_recommendations(
    loaded: Any, advice: Mapping[str, Any], source: str = "recommendations"
) -> tuple[Any, list[str]]:
    """The stack with each advised service's CPU and memory bounds replaced; a bound
    the advice leaves out (memory-only advice after OOM kills) keeps the stack's.

    Returns the new LoadedStack and the advised names the stack does not have
    (containers outside the stack, built-ins), which the caller reports.
    """
    stack = loaded.stack
    services = dict(stack.services)
    skipped = []
    for name, a in sorted(advice.items()):
        svc = services.get(name)
        if svc is None:
            skipped.append(name)
            continue
        res = svc.resources
        update = {}
        for what in ("cpu", "memory"):
            mine, theirs = getattr(res, what), getattr(a, what)
            lo = theirs.min if theirs.min is not None else mine.min
            hi = theirs.max if theirs.max is not None else mine.max
            if lo is not None and hi is not None and lo > hi:
                raise SpecError(
                    f"the advised {what} bounds and the stack's give min above max; "
                    "advise both min and max",
                    path=source,
                    key=f"services.{name}.{what}",
                )
            update[what] = mine.model_copy(update={"min": lo, "max": hi})
        services[name] = svc.model_copy(update={"resources": res.model_copy(update=update)})
    new = type(loaded)(
        stack=stack.model_copy(update={"services": services}), path=loaded.path, lines=loaded.lines
    )
    return new, skipped


@dataclass(frozen=True)
class Override:
    """An advised bound the plan could not honour, and why."""

    key: str  # cpu_limit_millicores, memory_limit_bytes
    advised: int
    planned: int
    reason: str

    @property
    def text(self) -> str:
        what, fmt = _KEYS[self.key]
        return f"advised {what} {fmt(self.advised)}, planned {fmt(self.planned)}: {self.reason}"


@dataclass(frozen=True)
class AppliedAdvice:
    """One advised service as planned: the advised bounds and the ones overridden."""

    service: str
    cpu_request: int | None
    cpu_limit: int | None
    memory_request: int | None
    memory_limit: int | None
    overrides: list[Override]

    def line(self) -> str:
        """``agent: advised CPU limit 468m, planned 290m: ...; advised memory ...``"""
        return f"{self.service}: " + "; ".join(o.text for o in self.overrides)

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu_request_millicores": self.cpu_request,
            "cpu_limit_millicores": self.cpu_limit,
            "memory_request_bytes": self.memory_request,
            "memory_limit_bytes": self.memory_limit,
            "overridden": [
                {"key": o.key, "advised": o.advised, "planned": o.planned, "reason": o.reason}
                for o in self.overrides
            ],
        }


def _milli(n: int) -> str:
    return f"{n}m"


def _bytes(n: int) -> str:
    from ops.units import format_bytes

    return format_bytes(n)


_KEYS = {
    "cpu_request_millicores": ("CPU request", _milli),
    "cpu_limit_millicores": ("CPU limit", _milli),
    "memory_request_bytes": ("memory request", _bytes),
    "memory_limit_bytes": ("memory limit", _bytes),
}


def _why_lower(
    kind: str, name: str, advised: int, planned: int, plan: Any, items: list[Any]
) -> str:
    """Why the water-fill gave one replica less than its advised limit: the VM's
    per-replica cap, the plan's rounding, or (most often) a VM that is full."""
    from ops.plan.capacity import CPU_QUANTUM, MEM_QUANTUM
    from ops.units import format_bytes, format_cpus

    h = plan.host
    replicas = sum(w.replicas for w in items)
    me = next(w for w in items if w.name == name)
    if kind == "cpu":
        usable, quantum = h.usable_cpus, CPU_QUANTUM
        amount = f"{format_cpus(usable)} usable CPUs"
        if advised > usable and planned >= usable // quantum * quantum:
            return f"one replica cannot have more than the VM's {amount}"
        if planned == advised // quantum * quantum:
            return "limits are rounded down to 0.01 CPU"
        over = f" (x {h.cpu_overcommit:g} overcommit)" if h.cpu_overcommit != 1 else ""
        return (
            f"the VM's {amount}{over} are shared by {replicas} replicas by cpu_weight "
            f"({name}'s: {me.cpu_weight}) and the limits take them all; more CPUs, "
            "host.cpu_overcommit or a higher cpu_weight would give it more"
        )
    usable, quantum = h.usable_memory, MEM_QUANTUM
    amount = f"{format_bytes(usable)} of usable memory"
    if advised > usable and planned >= usable // quantum * quantum:
        return f"one replica cannot have more than the VM's {amount}"
    if planned == advised // quantum * quantum:
        return "limits are rounded down to whole MiB"
    return (
        f"the VM's {amount} is shared by {replicas} replicas by memory weight "
        f"({name}'s: {me.mem_weight}) and the limits take it all; more memory or a higher "
        "memory_weight would give it more"
    )


def advice_in_plan(loaded: Any, plan: Any, advice: Mapping[str, Any]) -> dict[str, AppliedAdvice]:
    """Per advised service of the stack, the advised bounds and every one the plan did
    not honour. Reservations are the advised minimums exactly (or ``fit`` refused the
    plan); limits can come out lower when the VM cannot give every replica its max."""
    from ops.stack import workloads

    items = workloads(loaded.stack)
    allocations = plan.by_name()
    out: dict[str, AppliedAdvice] = {}
    for name, a in sorted(advice.items()):
        alloc = allocations.get(name)
        if alloc is None or name not in loaded.stack.services:
            continue
        overrides = []
        checks = (
            ("cpu_request_millicores", a.cpu.min, alloc.cpu_reservation, "cpu"),
            ("cpu_limit_millicores", a.cpu.max, alloc.cpu_limit, "cpu"),
            ("memory_request_bytes", a.memory.min, alloc.mem_reservation, "memory"),
            ("memory_limit_bytes", a.memory.max, alloc.mem_limit, "memory"),
        )
        for key, advised, planned, kind in checks:
            if advised is None or planned == advised:
                continue
            if key.endswith("_limit_millicores") or key.endswith("_limit_bytes"):
                if planned > advised:  # cannot happen: max clamps; say it if it does
                    reason = "the plan gave more than the advised maximum"
                else:
                    reason = _why_lower(kind, name, advised, planned, plan, items)
            else:
                reason = "the plan's reservation is not the advised minimum"
            overrides.append(Override(key, advised, planned, reason))
        out[name] = AppliedAdvice(name, a.cpu.min, a.cpu.max, a.memory.min, a.memory.max, overrides)
    return out
