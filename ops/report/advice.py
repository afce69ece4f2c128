"""Right-sizing advice from the history, and the file that carries it to ``plan``.

``vots-ops report recommend --format yaml`` writes a recommendations file;
``vots-ops plan --recommendations FILE`` applies it: each service's
``resources.cpu`` and ``resources.memory`` bounds become the advised request
(min) and limit (max), and the capacity planner fits them to the VM as usual.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ops.report.history import History
from ops.report.rightsizing import CurrentResources, Recommendation, Usage, recommend_all

HISTORY_S = 14 * 86400.0


def _service_of(container: Mapping[str, Any]) -> str:
    return container.get("service") or container["name"]


def usage_by_service(
    history: History, *, host: str | None = None, since: float | None = None
) -> tuple[dict[str, Usage], dict[str, CurrentResources]]:
    """Per service, every replica's samples pooled: limits apply per replica, so the
    distribution of one replica's usage is what the advice must cover."""
    now = time.time()
    since = now - HISTORY_S if since is None else since
    hosts = [host] if host else history.hosts()
    containers: dict[str, dict[str, Any]] = {}
    for h in hosts:
        latest = history.previous(h)
        if latest is None:
            continue
        for c in latest.raw.get("containers") or []:
            containers[c["name"]] = c
    # Containers seen in the history but gone now still count for their service.
    names = {
        scope.removeprefix("container:")
        for scope in history.scopes(host)
        if scope.startswith("container:")
    }
    cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)
    mem: dict[str, list[tuple[float, float]]] = defaultdict(list)
    thr: dict[str, list[tuple[float, float]]] = defaultdict(list)
    ooms: dict[str, list[float]] = defaultdict(list)
    for name in sorted(names):
        service = _service_of(containers[name]) if name in containers else name
        scope = f"container:{name}"
        cpu[service] += [
            (t, v / 100.0) for t, v in history.series(scope, "cpu_pct", since=since, host=host)
        ]
        mem[service] += history.series(scope, "mem_usage", since=since, host=host)
        thr[service] += history.series(scope, "throttled_ratio", since=since, host=host)
        ooms[service] += [
            t for t, v in history.series(scope, "oom_kills", since=since, host=host) if v > 0
        ]
    usage = {
        s: Usage(
            cpu=sorted(cpu[s]),
            memory=sorted(mem[s]),
            oom_kills=sorted(ooms[s]),
            cpu_throttling=sorted(thr[s]),
        )
        for s in sorted(set(cpu) | set(mem))
    }
    current: dict[str, CurrentResources] = {}
    for c in containers.values():
        limits = c.get("limits") or {}
        cpus = limits.get("cpus")
        shares = limits.get("cpu_shares")
        current[_service_of(c)] = CurrentResources(
            cpu_request=int(shares * 1000 / 1024) if shares else None,
            cpu_limit=round(cpus * 1000) if cpus else None,
            memory_request=limits.get("memory_reservation") or None,
            memory_limit=limits.get("memory") or None,
        )
    return usage, current


def recommendations(
    history: History, *, host: str | None = None, since: float | None = None
) -> list[Recommendation]:
    """Advice for every service with history."""
    usage, current = usage_by_service(history, host=host, since=since)
    return recommend_all(usage, current)


def _size(n: int) -> str:
    return f"{n // 1024**2}M" if n % 1024**2 == 0 else f"{-(-n // 1024**2)}M"


def recommendations_yaml(recs: list[Recommendation]) -> str:
    """The file ``plan --recommendations`` reads; reasons are comments for the reviewer."""
    lines = [
        "# Right-sizing advice from `vots-ops report recommend`; apply with",
        "# `vots-ops plan --recommendations FILE`. Values are per replica.",
        "services:",
    ]
    for r in recs:
        if not r.enough_data or None in (
            r.cpu_request,
            r.cpu_limit,
            r.memory_request,
            r.memory_limit,
        ):
            lines.append(f"  # {r.service}: no advice ({r.reasons[0] if r.reasons else 'no data'})")
            continue
        lines.append(f"  {r.service}:")
        for reason in r.reasons:
            lines.append(f"    # {reason}")
        lines.append(f"    cpu: {{min: {r.cpu_request}m, max: {r.cpu_limit}m}}")
        lines.append(
            f"    memory: {{min: {_size(r.memory_request)}, max: {_size(r.memory_limit)}}}"
        )  # type: ignore[arg-type]
    if lines[-1] == "services:":
        lines[-1] = "services: {}"
    return "\n".join(lines) + "\n"


def load_recommendations(path: Path) -> dict[str, Any]:
    """Read and validate a recommendations file (one-line errors with file and line)."""
    from pydantic import ConfigDict

    from ops.spec import load_yaml, read_text, validate
    from ops.stack import CpuRange, MemoryRange, Name, _Model

    class Advice(_Model):
        cpu: CpuRange
        memory: MemoryRange

    class Recommendations(_Model):
        model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
        services: dict[Name, Advice]

    data, lines = load_yaml(read_text(path), str(path))
    return dict(validate(Recommendations, data, lines, str(path)).services)


def apply_recommendations(loaded: Any, advice: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The stack with each advised service's CPU and memory bounds replaced.

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
        resources = svc.resources.model_copy(update={"cpu": a.cpu, "memory": a.memory})
        services[name] = svc.model_copy(update={"resources": resources})
    new = type(loaded)(
        stack=stack.model_copy(update={"services": services}), path=loaded.path, lines=loaded.lines
    )
    return new, skipped
