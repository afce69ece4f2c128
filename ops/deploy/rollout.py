"""Replacing a service's replicas one at a time, with the edge following.

nginx resolves an upstream's name when it starts or reloads, and keeps every
address it got until the next reload, so a removed container would still get
requests. For each old replica, in turn:

1. one new replica is started beside the old ones (``up --scale N+1
   --no-recreate``) and awaited until healthy;
2. ``nginx/upstreams.conf`` is rewritten with this service's servers pinned to
   the addresses of the replicas that stay (the new one included, the old one
   left out), checked with ``nginx -t`` in the edge, and the edge reloaded
   (``SIGHUP``): new nginx workers never send to the old replica, old workers
   finish what they have in flight and exit. deploy waits for that;
3. only then is the old replica stopped (``SIGTERM``, its grace period) and
   removed.

At the end the planned ``upstreams.conf`` (servers by name) is put back and the
edge reloaded once more. An interrupted rollout leaves the pinned file, which
the next ``deploy`` recognises by its header and puts back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ops.deploy.inspect import Container, project_containers
from ops.engine import Engine, SdkEngine
from ops.errors import ExternalToolError
from ops.proc import which

if TYPE_CHECKING:
    from ops.deploy.compose import Compose
    from ops.deploy.run import Deployment, Events

STOP_GRACE_S = 30
NGINX_CONF = "/etc/nginx/vots/nginx.conf"


@dataclass
class RolloutResult:
    service: str
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (old, new) names
    drain_seconds: list[float] = field(default_factory=list)  # edge reloads, each
    drain_timed_out: int = 0


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - an argument list, never a shell
        [which("docker"), *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def _workers(edge_id: str) -> tuple[set[str], int]:
    """The edge's nginx worker pids that take new requests, and how many are
    shutting down (``docker top``: no exec, no shell)."""
    proc = _docker("top", edge_id, "-eo", "pid,args")
    if proc.returncode != 0:
        raise ExternalToolError(f"docker top {edge_id[:12]} failed: {proc.stderr.strip()}")
    live, draining = set(), 0
    for line in proc.stdout.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if "nginx: worker process" in args:
            if "shutting down" in args:
                draining += 1
            else:
                live.add(pid)
    return live, draining


def _edge(engine: Engine | SdkEngine, d: Deployment, edge: str) -> Container | None:
    for c in project_containers(engine, d.project):
        if c.service == edge and c.running:
            return c
    return None


def reload_edge(
    engine: Engine | SdkEngine,
    d: Deployment,
    edge: str,
    *,
    drain_timeout: float,
    events: Events | None = None,
) -> float | None:
    """``nginx -t`` then SIGHUP in the edge container; wait until new workers run and the
    old ones have finished their requests. Seconds it took (None: no edge running)."""
    c = _edge(engine, d, edge)
    if c is None:
        return None
    test = _docker("exec", c.id, "nginx", "-t", "-q", "-c", NGINX_CONF, timeout=60)
    if test.returncode != 0:
        raise ExternalToolError(
            f"{c.name}: nginx -t refused the new configuration, so the edge was not "
            f"reloaded: {test.stderr.strip()[-500:]}"
        )
    before, _ = _workers(c.id)
    start = time.monotonic()
    hup = _docker("kill", "--signal", "HUP", c.id)
    if hup.returncode != 0:
        raise ExternalToolError(f"docker kill -s HUP {c.name} failed: {hup.stderr.strip()}")
    deadline = start + drain_timeout
    while True:
        live, draining = _workers(c.id)
        if live and not (live & before) and draining == 0:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            if events:
                events.say(
                    f"{c.name}: old nginx workers still finishing requests after "
                    f"{drain_timeout:g}s; going on"
                )
            return None
        time.sleep(0.1)


OMITTED_SERVER = "127.0.0.1:9 down"  # nginx answers 502 (no live upstreams) for it


def write_upstreams(
    d: Deployment, pins: Mapping[str, Sequence[str]] | None = None, why: str = ""
) -> None:
    """``nginx/upstreams.conf``: as planned, but with ``pins`` (service -> addresses)
    and every routed service left out of the deployment marked down."""
    from ops.files import write_all
    from ops.plan.render import UPSTREAMS_FILE, render_upstreams

    ws = d.workloads()
    servers: dict[str, list[str]] = {}
    for name in d.omitted:
        spec = ws[name].spec if name in ws else None
        if spec is not None and spec.routes:
            servers[name] = [OMITTED_SERVER]
    for name, addresses in (pins or {}).items():
        port = ws[name].port
        servers[name] = [f"{ip}:{port}" for ip in addresses]
    if not servers:
        text = d.result.files[UPSTREAMS_FILE]
    else:
        reasons = [why] if why else []
        if any(v == [OMITTED_SERVER] for v in servers.values()):
            left = sorted(n for n, v in servers.items() if v == [OMITTED_SERVER])
            reasons.append(f"left out: {', '.join(left)}")
        text = render_upstreams(d.loaded, d.result.plan, d.out, servers, ", ".join(reasons))
    write_all(d.out, {UPSTREAMS_FILE: text})


def _edge_network(d: Deployment, edge: str, service: str) -> str | None:
    """The network the edge reaches ``service`` on (the first both are on)."""
    specs = d.services()
    edge_nets = list(specs[edge].get("networks") or [])
    for n in specs[service].get("networks") or []:
        if n in edge_nets:
            return d.network_name(n)
    return None


def roll(
    engine: Engine | SdkEngine,
    d: Deployment,
    compose: Compose,
    service: str,
    replicas: int,
    *,
    stale: Sequence[Container],
    edge: str | None,
    health_timeout: float,
    drain_timeout: float,
    events: Events | None = None,
) -> RolloutResult:
    """Replace each of ``stale`` by a new replica; see the module doc."""
    from ops.deploy.run import wait_healthy

    result = RolloutResult(service)
    routed = bool(edge) and bool(d.workloads()[service].spec and d.workloads()[service].spec.routes)  # type: ignore[union-attr]
    network = _edge_network(d, edge, service) if edge and routed else None
    old_ids = {c.id for c in stale}
    pinned = False

    def retire(old: Container, keep: Sequence[Container]) -> None:
        nonlocal pinned
        if network is not None and edge is not None:
            addresses = [a for a in (c.address(network) for c in keep) if a]
            write_upstreams(d, {service: addresses}, f"rolling {service}, {old.name} leaving")
            pinned = True
            took = reload_edge(engine, d, edge, drain_timeout=drain_timeout, events=events)
            if took is None:
                result.drain_timed_out += 1
            else:
                result.drain_seconds.append(took)
        stop = _docker("stop", "--time", str(STOP_GRACE_S), old.id, timeout=STOP_GRACE_S + 60)
        if stop.returncode != 0:
            raise ExternalToolError(f"docker stop {old.name} failed: {stop.stderr.strip()}")
        _docker("rm", "--force", old.id)

    def mine() -> list[Container]:
        return [c for c in project_containers(engine, d.project) if c.service == service]

    try:
        for i, old in enumerate(stale, 1):
            current = mine()
            fresh = [c for c in current if c.id not in old_ids]
            new_name = "a replica left by an earlier run"
            if len(fresh) < replicas:  # one new replica beside the old ones, healthy first
                before = {c.id for c in current}
                compose.up(service, scale=len(current) + 1, recreate=False)
                ready = wait_healthy(engine, d, service, len(current) + 1, timeout=health_timeout)
                new = [c for c in ready if c.id not in before]
                new_name = new[0].name if new else "new replica"
            else:
                ready = [c for c in current if c.ready]
            if events:
                events.say(f"{service}: {new_name} healthy ({i}/{len(stale)}); {old.name} goes")
            retire(old, [c for c in ready if c.id != old.id and c.id in {x.id for x in mine()}])
            result.replaced.append((old.name, new_name))
        # More new replicas than planned (an interrupted run): the newest go.
        fresh = [c for c in mine() if c.id not in old_ids]
        for extra in sorted(fresh, key=lambda c: c.number)[replicas:]:
            retire(extra, [c for c in fresh if c.id != extra.id])
    finally:
        if pinned and edge is not None:
            write_upstreams(d)
            reload_edge(engine, d, edge, drain_timeout=drain_timeout, events=events)
    return result
