"""deploy, status and down: the planned stack on the Docker engine, verified.

``deploy()``:

1. refuses a drifted plan: the files in the output directory must be what
   ``stack.yaml`` renders (with the same ``recommendations`` as ``plan``). The
   one exception is ``nginx/upstreams.conf`` left pinned by a rollout that was
   interrupted: it is deploy's own, and put back;
2. makes every image ready (``ops.images.build.resolve``: built, reused,
   pulled, or an offline stand-in) and writes ``.vots-deploy.yml``, a compose
   override naming the exact image each service runs;
3. goes through the services in dependency order, each with ``up -d
   --no-deps`` and then a wait until every replica is healthy (a timeout per
   service; on failure, the failing container's health output and last log
   lines). A service whose containers already match (compose's config hash) is
   left alone; a changed stateless service with two or more replicas is
   replaced one replica at a time (``ops.deploy.rollout``), others are
   recreated;
4. reloads the edge when any routed service's containers changed, so nginx
   resolves the new replicas;
5. verifies every container against the plan (``ops.deploy.inspect.verify``)
   and returns the status.

``status()`` is the same table at any time; ``down()`` stops the project.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ops.deploy.compose import Compose
from ops.deploy.inplace import State
from ops.deploy.inspect import (
    Container,
    Difference,
    Expected,
    by_service,
    project_containers,
    verify,
)
from ops.engine import Engine, SdkEngine, connect
from ops.errors import CheckFailed, DriftError, ExternalToolError, OpsError
from ops.images.build import ImageResult, build_order
from ops.plan.capacity import Allocation
from ops.plan.pipeline import PlanResult
from ops.plan.render import UPSTREAMS_FILE
from ops.stack import LoadedStack, Workload, workloads

OVERRIDE = ".vots-deploy.yml"
COMPOSE_FILE = "docker-compose.yml"
PINNED_MARK = "Pinned by `vots-ops deploy`"
DEFAULT_HEALTH_TIMEOUT = 300.0
POLL = 0.5

Action = Literal["created", "unchanged", "updated", "rolled", "recreated", "reloaded", "omitted"]


class DeployFailed(CheckFailed):
    """A service did not become healthy, or what runs differs from the plan (exit 1).

    ``details`` holds the evidence (health output, log lines) for the CLI to show.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class NotDeployed(OpsError):
    """status/down found no container of the project (exit 2: nothing to act on)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Row:
    """One container in the status table."""

    service: str
    container: str
    image: str
    standin_for: str | None
    state: str
    health: str
    uptime: float | None
    restarts: int
    oom_killed: bool
    cpu_limit: int | None  # millicores applied
    cpu_planned: int | None
    mem_limit: int | None  # bytes applied
    mem_planned: int | None
    cpu_used: float | None  # cores, over the status read
    mem_used: int | None
    differences: tuple[Difference, ...] = ()

    @property
    def ok(self) -> bool:
        return (
            self.state == "running"
            and self.health in ("healthy", "none")
            and not self.differences
            and not self.oom_killed
        )


@dataclass(frozen=True)
class Status:
    project: str
    rows: tuple[Row, ...]
    missing: tuple[str, ...]  # planned services with fewer containers than replicas
    omitted: tuple[str, ...]  # left out on purpose (deploy --without)
    compose: str

    @property
    def ok(self) -> bool:
        return not self.missing and all(r.ok for r in self.rows)

    @property
    def differences(self) -> list[Difference]:
        return [d for r in self.rows for d in r.differences]


@dataclass(frozen=True)
class DeployResult:
    images: tuple[ImageResult, ...]
    actions: Mapping[str, str]  # service -> what was done, in words
    healthy_after: Mapping[str, float]  # service -> seconds from its start to healthy
    status: Status
    seconds: float
    rollouts: Mapping[str, Any] = field(default_factory=dict)  # service -> RolloutResult


@dataclass
class Events:
    """What a front end is told as deploy goes (all optional)."""

    image_start: Callable[[Workload, str], None] | None = None
    image_done: Callable[[ImageResult], None] | None = None
    service_start: Callable[[str, str, int], None] | None = None  # name, action, replicas
    service_progress: Callable[[str, int, int], None] | None = None  # name, ready, wanted
    service_done: Callable[[str, str, float], None] | None = None
    note: Callable[[str], None] | None = None
    warning: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        if self.note:
            self.note(line)

    def warn(self, line: str) -> None:
        if self.warning:
            self.warning(line)
        else:
            self.say(line)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Deployment:
    """The plan as deploy needs it: the stack, its fitted plan, the rendered compose
    file (parsed), where it lives, and the compose tool."""

    loaded: LoadedStack
    result: PlanResult
    compose_doc: Mapping[str, Any]
    out: Path
    project: str
    omitted: frozenset[str] = frozenset()  # left out (deploy --without)

    @property
    def allocations(self) -> dict[str, Allocation]:
        return self.result.plan.by_name()

    def workloads(self) -> dict[str, Workload]:
        return {w.name: w for w in workloads(self.loaded.stack)}

    def services(self) -> dict[str, Mapping[str, Any]]:
        return dict(self.compose_doc.get("services") or {})

    def network_name(self, name: str) -> str:
        spec = (self.compose_doc.get("networks") or {}).get(name) or {}
        return str(spec.get("name") or f"{self.project}_{name}")

    def expected(self, service: str, image_id: str | None) -> Expected:
        spec = self.services()[service]
        ports = set()
        for entry in spec.get("ports") or []:
            ip, host_port, container_port = str(entry).rsplit(":", 2)
            proto = "tcp"
            if "/" in container_port:
                container_port, proto = container_port.split("/", 1)
            ports.add((ip, host_port, f"{container_port}/{proto}"))
        return Expected(
            service=service,
            replicas=int((spec.get("deploy") or {}).get("replicas", 1)),
            alloc=self.allocations.get(service),
            read_only=bool(spec.get("read_only")),
            cap_add=frozenset(spec.get("cap_add") or []),
            networks=frozenset(self.network_name(n) for n in spec.get("networks") or []),
            ports=frozenset(ports),
            image_id=image_id,
        )

    def compose(self) -> Compose:
        files = [self.out / COMPOSE_FILE]
        if (self.out / OVERRIDE).is_file():
            files.append(self.out / OVERRIDE)
        return Compose.find(self.project, files)

    def edge_name(self) -> str | None:
        for name, w in self.workloads().items():
            if w.kind == "edge":
                return name
        return None


def _project_name(name: str) -> str:
    """What compose calls the project (v1 and v2 agree on this for valid names)."""
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch in "-_")


def load(
    stack_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    recommendations: str | Path | None = None,
    on_warning: Callable[[str], None] | None = None,
    refuse_drift: bool = True,
) -> Deployment:
    """The plan, refused when the files on disk are not what it renders (unless
    ``refuse_drift`` is false: then ``on_warning`` hears of it, for status and down).

    ``nginx/upstreams.conf`` pinned by deploy (its header says so: a rollout in
    progress or interrupted, or services left out) is deploy's own and not drift;
    deploy rewrites it before the edge next reads it."""
    import yaml

    from ops.plan.pipeline import plan_stack

    result = plan_stack(
        stack_path, out_dir, mode="check", recommendations=recommendations, on_warning=on_warning
    )
    out = result.out_dir
    changed = set(result.changed)
    if changed == {UPSTREAMS_FILE} and not result.stale and not result.manifest_changed:
        try:
            current = (out / UPSTREAMS_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            current = ""
        if PINNED_MARK in current:
            changed = set()
    if changed or result.stale or result.manifest_changed:
        names = ", ".join([*sorted(changed), *result.stale]) or "the manifest"
        how = "vots-ops plan" + (f" --recommendations {recommendations}" if recommendations else "")
        if not refuse_drift:
            if on_warning is not None:
                on_warning(
                    f"{out}: {names} differ from what {result.source} renders "
                    f"(`{how}` brings them up to date); compared with what it renders now"
                )
        else:
            raise DriftError(
                f"{out}: {names} differ from what {result.source} renders; run `{how}` "
                "first (deploy runs only what the plan says)",
                result.diff,
            )
    doc = yaml.safe_load(result.files[COMPOSE_FILE])
    loaded = result_loaded(stack_path, recommendations)
    return Deployment(
        loaded,
        result,
        doc,
        out,
        _project_name(loaded.stack.project),
        frozenset(_omitted_from_override(out)),
    )


def result_loaded(stack_path: str | Path, recommendations: str | Path | None) -> LoadedStack:
    from ops.stack import load_stack

    loaded = load_stack(stack_path)
    if recommendations is not None:
        from ops.report.advice import apply_recommendations, load_recommendations

        loaded, _ = apply_recommendations(
            loaded, load_recommendations(Path(recommendations)), str(recommendations)
        )
    return loaded


# --------------------------------------------------------------------------- override


def write_override(d: Deployment, images: Sequence[ImageResult], without: Iterable[str]) -> None:
    """``.vots-deploy.yml``: the exact image of each service (a digest tag, a stand-in)."""
    from ops.files import write_all
    from ops.plan.render import Quoted  # noqa: F401  (the same quoting rules as plan)

    lines = [
        "# Written by `vots-ops deploy`: the image each service runs on this engine.",
        "# A compose override of docker-compose.yml; deploy rewrites it on every run.",
    ]
    left_out = sorted(set(without))
    if left_out:
        lines.append(f"# Left out (deploy --without): {', '.join(left_out)}")
    lines.append("services:")
    for img in images:
        lines.append(f"  {img.service}:")
        lines.append(f'    image: "{img.use}"')
        if img.standin_for:
            lines.append("    labels:")
            lines.append(f'      io.vots.standin: "{img.standin_for}"')
    if not images:
        lines.append("  {}")
    write_all(d.out, {OVERRIDE: "\n".join(lines) + "\n"})


# --------------------------------------------------------------------------- waiting


def _logs(cid: str, lines: int = 20) -> str:
    from ops.proc import which

    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [which("docker"), "logs", "--tail", str(lines), cid],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return (proc.stdout + proc.stderr).strip()


def _failure(c: Container) -> str | None:
    if c.health == "unhealthy":
        return "unhealthy"
    if c.status in ("exited", "dead"):
        return f"exited with {c.exit_code}" + (" (OOM-killed)" if c.oom_killed else "")
    if c.status == "restarting" or c.restarts:
        return f"restarting (restarted {c.restarts} time(s))"
    return None


def wait_healthy(
    engine: Engine | SdkEngine,
    d: Deployment,
    service: str,
    replicas: int,
    *,
    timeout: float,
    ignore: Iterable[str] = (),
    events: Events | None = None,
) -> list[Container]:
    """Block until ``replicas`` containers of ``service`` (not in ``ignore``) are ready."""
    skip = set(ignore)
    deadline = time.monotonic() + timeout
    last: list[Container] = []
    while True:
        current = [
            c
            for c in project_containers(engine, d.project)
            if c.service == service and c.id not in skip
        ]
        last = current
        ready = [c for c in current if c.ready]
        if events and events.service_progress:
            events.service_progress(service, len(ready), replicas)
        for c in current:
            why = _failure(c)
            if why is not None:
                raise DeployFailed(
                    f"{service}: {c.name} is {why}",
                    _evidence(c),
                )
        if len(ready) >= replicas:
            return ready
        if time.monotonic() >= deadline:
            slow = [c for c in current if not c.ready]
            detail = "\n".join(_evidence(c) for c in slow[:2])
            states = ", ".join(f"{c.name}: {c.status}/{c.health}" for c in current) or "none"
            raise DeployFailed(
                f"{service}: {len(ready)} of {replicas} replica(s) healthy after "
                f"{timeout:g}s ({states})",
                detail,
            )
        time.sleep(POLL)
    return last  # pragma: no cover


def _evidence(c: Container) -> str:
    out = [f"--- {c.name}: {c.status}, health {c.health}"]
    health = c.health_output()
    if health:
        out.append(f"last health check: {health}")
    logs = _logs(c.id)
    if logs:
        out.append("last log lines:")
        out.append(logs)
    return "\n".join(out)


# --------------------------------------------------------------------------- deploy


def _plan_replicas(d: Deployment, service: str) -> int:
    return int((d.services()[service].get("deploy") or {}).get("replicas", 1))


def _stateless(d: Deployment, service: str) -> bool:
    spec = d.services()[service]
    return not spec.get("volumes") and d.workloads()[service].kind == "app"


def _waves(d: Deployment, left_out: set[str]) -> list[list[str]]:
    """Services in waves: each after the waves holding what it depends on (the edge
    after every routed service). A wave's services start together."""
    ws = d.workloads()
    specs = d.services()
    level: dict[str, int] = {}
    for w in build_order(d.loaded):
        if w.name in left_out or w.name not in specs:
            continue
        deps = [n for n in (specs[w.name].get("depends_on") or {}) if n in level]
        level[w.name] = 1 + max((level[n] for n in deps), default=-1)
    edge = d.edge_name()
    if edge in level:
        routed = [n for n, w in ws.items() if n in level and w.spec is not None and w.spec.routes]
        level[edge] = max([level[edge], *(level[n] + 1 for n in routed)])
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name, n in level.items():
        waves[n].append(name)
    return [w for w in waves if w]


def _start(
    api: Engine | SdkEngine,
    d: Deployment,
    compose: Compose,
    service: str,
    wanted: Wanted,
    state: State,
    edge: str | None,
    left_out: set[str],
    health_timeout: float,
    drain_timeout: float,
    events: Events,
    rollouts: dict[str, Any],
) -> str:
    """Bring one service to the plan without waiting for it; what was done, in words."""
    from ops.deploy import inplace, rollout

    replicas = _plan_replicas(d, service)
    current = [c for c in project_containers(api, d.project) if c.service == service]
    stale = [c for c in current if state.effective_hash(c) != wanted.hash]
    alloc = d.allocations.get(service)
    if not current:
        action = "created"
    elif not stale and len(current) == replicas and all(c.running for c in current):
        action = "unchanged"
        if alloc is not None and any(
            inplace.Limits.applied(c) != inplace.Limits.of(alloc) for c in current
        ):
            # The configuration is the plan's, the limits are not (``docker update``
            # by hand, say): put the plan's back, in place.
            stale = list(current)
            action = "updated"
    elif (
        stale
        and alloc is not None
        and wanted.hash is not None
        and len(current) == replicas
        and all(c.running for c in current)
        and all(
            state.fingerprint_of(c) == wanted.fingerprint
            and (wanted.image_id is None or c.image_id == wanted.image_id)
            for c in stale
        )
    ):
        action = "updated"
    elif stale and replicas >= 2 and _stateless(d, service) and any(c.ready for c in current):
        action = "rolled"
    else:
        action = "recreated"
    if action == "updated" and alloc is not None and wanted.hash is not None:
        if events.service_start:
            events.service_start(service, action, replicas)
        try:
            for c in stale:
                inplace.apply(api, c, inplace.Limits.of(alloc))
                state.record(c, wanted.hash, wanted.fingerprint)
        except ExternalToolError as exc:
            events.warn(f"{service}: {exc}; replacing its containers instead")
            if replicas >= 2 and _stateless(d, service) and any(c.ready for c in current):
                action = "rolled"
            else:
                action = "recreated"
        else:
            return f"limits updated in place on {len(stale)} container(s)"
    elif events.service_start:
        events.service_start(service, action, replicas)
    if action == "rolled":
        result = rollout.roll(
            api,
            d,
            compose,
            service,
            replicas,
            stale=stale,
            edge=None if edge in left_out else edge,
            health_timeout=health_timeout,
            drain_timeout=drain_timeout,
            events=events,
        )
        rollouts[service] = result
        return f"rolled {len(result.replaced)} replica(s), one at a time"
    if action != "unchanged":
        compose.up(service)
    return action


@dataclass(frozen=True)
class Wanted:
    """What one service's containers must match: compose's config hash, the
    configuration's fingerprint without the limits, and the image."""

    hash: str | None
    fingerprint: str
    image_id: str | None


def deploy(
    stack_path: str | Path = "stack.yaml",
    out_dir: str | Path | None = None,
    *,
    recommendations: str | Path | None = None,
    without: Iterable[str] = (),
    offline: bool = False,
    build: bool = True,
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
    drain_timeout: float = 120.0,
    engine: Engine | SdkEngine | None = None,
    events: Events | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> DeployResult:
    """Bring the planned stack up (or up to date) and verify it; see the module doc."""
    from ops.deploy import inplace, rollout
    from ops.images.build import resolve
    from ops.images.python import image_id

    events = events or Events()
    start = time.monotonic()
    d = load(stack_path, out_dir, recommendations=recommendations, on_warning=on_warning)
    known = d.workloads()
    left_out = set(without)
    d = dataclasses.replace(d, omitted=frozenset(left_out))
    unknown = sorted(left_out - set(known))
    if unknown:
        raise OpsError(
            f"--without {unknown[0]}: not a service of {d.loaded.path} "
            f"(services: {', '.join(sorted(known))})",
            fields=("without",),
        )
    images = resolve(
        d.loaded,
        without=left_out,
        offline=offline,
        build=build,
        on_start=events.image_start,
        on_done=events.image_done,
    )
    write_override(d, images, left_out)
    compose = d.compose()
    own_engine = engine is None
    api = engine or connect()
    actions: dict[str, str] = {}
    healthy_after: dict[str, float] = {}
    rollouts: dict[str, Any] = {}
    state = inplace.State.load(d.out)
    try:
        waves = _waves(d, left_out)
        hashes = compose.config_hashes([n for wave in waves for n in wave])
        specs = d.services()
        uses = {img.service: img for img in images}
        wanted: dict[str, Wanted] = {}
        for service in hashes:
            img = uses.get(service)
            iid = image_id(img.use) if img else None
            spec = {**specs[service], "image": img.use if img else specs[service].get("image")}
            if img and img.standin_for:
                spec["standin"] = img.standin_for
            wanted[service] = Wanted(hashes[service], inplace.fingerprint(spec, iid), iid)
        edge = d.edge_name()
        from ops.deploy.rollout import write_upstreams

        write_upstreams(d)  # as planned, with the services left out marked down
        try:
            for wave in waves:
                started: dict[str, float] = {}
                for service in wave:
                    action = _start(
                        api,
                        d,
                        compose,
                        service,
                        wanted.get(service) or Wanted(hashes.get(service), "", None),
                        state,
                        edge,
                        left_out,
                        health_timeout,
                        drain_timeout,
                        events,
                        rollouts,
                    )
                    actions[service] = action
                    started[service] = time.monotonic()
                for service in wave:  # they start together; waiting in turn costs the slowest
                    wait_healthy(
                        api,
                        d,
                        service,
                        _plan_replicas(d, service),
                        timeout=health_timeout,
                        events=events,
                    )
                    healthy_after[service] = time.monotonic() - started[service]
                    if events.service_done:
                        events.service_done(service, actions[service], healthy_after[service])
        finally:
            # What was updated in place must be known next time, even after a failure.
            _remember(api, d, wanted, state)
        edge_action = actions.get(edge or "", "")
        if (
            edge
            and edge not in left_out
            and (edge_action == "unchanged" or edge_action.startswith("limits"))
        ):
            # nginx.conf may have changed (a bind-mounted file is not in compose's hash),
            # a recreated service has new addresses, and nginx resolves upstream names
            # only when it starts or reloads: reload it (gracefully) on every deploy.
            rollout.reload_edge(api, d, edge, drain_timeout=drain_timeout, events=events)
            actions[edge] = f"{edge_action}, reloaded"
        st = status(d, engine=api, omitted=left_out, usage=False)
    finally:
        if own_engine:
            api.close()
    if not st.ok:
        lines = [d.line() for d in st.differences]
        lines += [f"{name}: fewer containers than planned" for name in st.missing]
        raise DeployFailed(
            f"the stack is up but differs from the plan: {'; '.join(lines[:5])}",
            "\n".join(lines),
        )
    return DeployResult(
        tuple(images), actions, healthy_after, st, time.monotonic() - start, rollouts
    )


def _remember(
    api: Engine | SdkEngine, d: Deployment, wanted: Mapping[str, Wanted], state: State
) -> None:
    """Record every container now as planned in the state (``ops.deploy.inplace``);
    best effort: a state not written only means the next deploy replaces rather
    than updates."""
    try:
        containers = project_containers(api, d.project)
        for c in containers:
            w = wanted.get(c.service)
            if w is None or w.hash is None:
                continue
            if state.effective_hash(c) == w.hash and (
                w.image_id is None or c.image_id == w.image_id
            ):
                state.record(c, w.hash, w.fingerprint)
        state.save([c.id for c in containers])
    except (OpsError, OSError):
        return


# --------------------------------------------------------------------------- status


def _usage(ids: Sequence[str], wait: float = 1.0) -> dict[str, tuple[float | None, int | None]]:
    """``{id: (cores used over ``wait``, memory bytes)}`` from two readings."""
    from ops.report.containers import collect_containers

    first, _ = collect_containers(follow=ids)
    t0 = time.monotonic()
    time.sleep(wait)
    second, _ = collect_containers(follow=ids)
    took = max(1e-3, time.monotonic() - t0)
    before = {c.get("id"): c for c in first}
    out: dict[str, tuple[float | None, int | None]] = {}
    for c in second:
        cid = str(c.get("id"))
        mem = (c.get("memory") or {}).get("usage")
        a = ((before.get(cid) or {}).get("cpu") or {}).get("usage_ns")
        b = (c.get("cpu") or {}).get("usage_ns")
        cores = (b - a) / 1e9 / took if isinstance(a, int) and isinstance(b, int) else None
        out[cid] = (cores, int(mem) if isinstance(mem, int) else None)
    return out


def status(
    d: Deployment,
    *,
    engine: Engine | SdkEngine | None = None,
    omitted: Iterable[str] | None = None,
    usage: bool = True,
) -> Status:
    """Every container of the project against the plan."""
    from ops.images.build import STANDIN_LABEL, image_labels

    own = engine is None
    api = engine or connect()
    try:
        containers = project_containers(api, d.project)
    finally:
        if own:
            api.close()
    if omitted is None:
        omitted = _omitted_from_override(d.out)
    left_out = set(omitted)
    grouped = by_service(containers)
    used = _usage([c.id for c in containers if c.running]) if usage and containers else {}
    rows = []
    missing = []
    labels_cache: dict[str, dict[str, str]] = {}
    for service in [w.name for w in build_order(d.loaded)]:
        if service in left_out:
            continue
        replicas = _plan_replicas(d, service)
        present = grouped.get(service, [])
        if len([c for c in present if c.running]) < replicas:
            missing.append(service)
        for c in present:
            if c.image_id not in labels_cache:
                labels_cache[c.image_id] = image_labels(c.image_id)
            standin = labels_cache[c.image_id].get(STANDIN_LABEL)
            want = d.expected(service, None)
            diffs = verify(c, want)
            host = c.raw.get("HostConfig") or {}
            a = want.alloc
            cores, mem = used.get(c.id, (None, None))
            rows.append(
                Row(
                    service=service,
                    container=c.name,
                    image=c.image,
                    standin_for=standin,
                    state=c.status,
                    health=c.health,
                    uptime=c.uptime(),
                    restarts=c.restarts,
                    oom_killed=c.oom_killed,
                    cpu_limit=int(host.get("NanoCpus") or 0) // 1_000_000 or None,
                    cpu_planned=a.cpu_limit if a else None,
                    mem_limit=int(host.get("Memory") or 0) or None,
                    mem_planned=a.mem_limit if a else None,
                    cpu_used=cores,
                    mem_used=mem,
                    differences=tuple(diffs),
                )
            )
    compose = d.compose()
    return Status(d.project, tuple(rows), tuple(missing), tuple(sorted(left_out)), compose.name)


def _omitted_from_override(out: Path) -> list[str]:
    path = out / OVERRIDE
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# Left out (deploy --without): "):
            return [n.strip() for n in line.split(":", 1)[1].split(",") if n.strip()]
    return []


# --------------------------------------------------------------------------- down


def down(d: Deployment, *, volumes: bool = False) -> list[str]:
    """Stop and remove the project's containers (and its volumes with ``volumes``);
    the names of the containers that were there."""
    with connect() as api:
        names = [c.name for c in project_containers(api, d.project)]
    if not names:
        raise NotDeployed(f"no container of project {d.project!r} is on this engine")
    d.compose().down(volumes=volumes)
    return names
