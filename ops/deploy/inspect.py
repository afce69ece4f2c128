"""What runs, read from the engine and compared with the plan.

``project_containers`` lists a compose project's containers by label.
``verify`` compares each container with what the plan and the rendered compose
file say it must be: CPU (``NanoCpus``), memory limit and reservation, pids,
CPU shares, read-only root, dropped and added capabilities,
``no-new-privileges``, networks, published ports, and the image it runs. Each
difference is a :class:`Difference` naming the container, the field, what the
plan says and what Docker applied.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ops.engine import Engine, SdkEngine
from ops.errors import EngineNotFound
from ops.plan.capacity import Allocation

SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"
NUMBER_LABEL = "com.docker.compose.container-number"
HASH_LABEL = "com.docker.compose.config-hash"


@dataclass(frozen=True)
class Container:
    """One container as deploy and status need it."""

    id: str
    name: str
    service: str
    number: int
    image_id: str
    image: str  # the reference it was created from
    running: bool
    status: str  # running, exited, restarting, ...
    health: str  # healthy, unhealthy, starting, none
    started_at: float | None  # epoch seconds
    restarts: int
    oom_killed: bool
    exit_code: int
    config_hash: str
    raw: Mapping[str, Any]

    @property
    def ready(self) -> bool:
        return self.running and self.health in ("healthy", "none")

    def uptime(self, now: float | None = None) -> float | None:
        if not self.running or self.started_at is None:
            return None
        return max(0.0, (now or time.time()) - self.started_at)

    def address(self, network: str) -> str | None:
        nets = (self.raw.get("NetworkSettings") or {}).get("Networks") or {}
        ip = (nets.get(network) or {}).get("IPAddress")
        return str(ip) if ip else None

    def health_output(self) -> str:
        log = ((self.raw.get("State") or {}).get("Health") or {}).get("Log") or []
        if not log:
            return ""
        last = log[-1]
        return f"exit {last.get('ExitCode')}: {str(last.get('Output', '')).strip()[-500:]}"


def _epoch(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # "2026-12-02T20:41:42.123456789Z": Python takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head + "+00:00")
    except ValueError:
        return None
    return when.timestamp() + (float("0." + frac[:6]) if frac else 0.0)


def container(raw: Mapping[str, Any]) -> Container:
    state = raw.get("State") or {}
    labels = (raw.get("Config") or {}).get("Labels") or {}
    return Container(
        id=str(raw.get("Id", "")),
        name=str(raw.get("Name", "")).lstrip("/"),
        service=str(labels.get(SERVICE_LABEL, "")),
        number=int(labels.get(NUMBER_LABEL, "0") or 0),
        image_id=str(raw.get("Image", "")),
        image=str((raw.get("Config") or {}).get("Image", "")),
        running=bool(state.get("Running")),
        status=str(state.get("Status", "")),
        health=str((state.get("Health") or {}).get("Status", "none")),
        started_at=_epoch(state.get("StartedAt")),
        restarts=int(raw.get("RestartCount") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        exit_code=int(state.get("ExitCode") or 0),
        config_hash=str(labels.get(HASH_LABEL, "")),
        raw=raw,
    )


def project_containers(engine: Engine | SdkEngine, project: str) -> list[Container]:
    """Every container of ``project`` (stopped ones too), inspected, by service and number."""
    listed = engine.containers(all=True)
    out = []
    for item in listed:
        labels = item.get("Labels") or {}
        if labels.get(PROJECT_LABEL) != project:
            continue
        try:
            out.append(container(engine.inspect(str(item["Id"]))))
        except EngineNotFound:  # removed between the list and the inspect
            continue
    return sorted(out, key=lambda c: (c.service, c.number, c.name))


def by_service(containers: Iterable[Container]) -> dict[str, list[Container]]:
    out: dict[str, list[Container]] = {}
    for c in containers:
        out.setdefault(c.service, []).append(c)
    return out


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Difference:
    container: str
    field: str
    planned: str
    applied: str

    def line(self) -> str:
        return f"{self.container}: {self.field} is {self.applied}, the plan says {self.planned}"


@dataclass(frozen=True)
class Expected:
    """What one service's containers must be: from the plan and the rendered compose file."""

    service: str
    replicas: int
    alloc: Allocation | None
    read_only: bool
    cap_add: frozenset[str]
    networks: frozenset[str]  # full network names (<project>_<name>)
    ports: frozenset[tuple[str, str, str]]  # (host ip, host port, container port/tcp)
    image_id: str | None


def _cpu(nano: int) -> str:
    return f"{nano / 1e9:g} CPUs"


def _bytes(n: int) -> str:
    from ops.units import format_bytes

    return format_bytes(n)


def _ports(raw: Mapping[str, Any]) -> frozenset[tuple[str, str, str]]:
    bindings = (raw.get("HostConfig") or {}).get("PortBindings") or {}
    out = set()
    for port, binds in bindings.items():
        for b in binds or []:
            out.add((str(b.get("HostIp") or "0.0.0.0"), str(b.get("HostPort") or ""), str(port)))
    return frozenset(out)


def verify(c: Container, want: Expected) -> list[Difference]:
    """Every way ``c`` differs from ``want``."""
    host = c.raw.get("HostConfig") or {}
    diffs: list[Difference] = []

    def check(field: str, planned: Any, applied: Any, show: Any = str) -> None:
        if planned != applied:
            diffs.append(Difference(c.name, field, show(planned), show(applied)))

    a = want.alloc
    if a is not None:
        check("cpu limit", a.cpu_limit * 1_000_000, int(host.get("NanoCpus") or 0), _cpu)
        check("memory limit", a.mem_limit, int(host.get("Memory") or 0), _bytes)
        check(
            "memory reservation",
            a.mem_reservation,
            int(host.get("MemoryReservation") or 0),
            _bytes,
        )
        check("pids limit", a.pids, int(host.get("PidsLimit") or 0))
        check("cpu shares", a.cpu_shares, int(host.get("CpuShares") or 0))
    check("read-only root", want.read_only, bool(host.get("ReadonlyRootfs")))
    check("dropped capabilities", ["ALL"], sorted(host.get("CapDrop") or []), ",".join)
    check(
        "added capabilities",
        sorted(want.cap_add),
        sorted(host.get("CapAdd") or []),
        lambda v: ",".join(v) or "none",
    )
    nnp = "no-new-privileges:true" in (host.get("SecurityOpt") or [])
    check("no-new-privileges", True, nnp)
    nets = frozenset(((c.raw.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    check("networks", sorted(want.networks), sorted(nets), lambda v: ",".join(v) or "none")
    check(
        "published ports",
        sorted(want.ports),
        sorted(_ports(c.raw)),
        lambda v: ",".join(f"{ip}:{hp}->{cp}" for ip, hp, cp in v) or "none",
    )
    if want.image_id is not None:
        check("image", want.image_id[:19], c.image_id[:19])
    return diffs
