"""A one-node swarm on the engine here, and the bundled stack made deployable on it.

For tests/deploy/test_swarm.py and bench/swarm_update.py. ``one_node_swarm``
initialises a swarm only when the engine is in none, and leaves only the swarm
it created; the node label datastores need is added and removed again.
``swarm_site`` is the bundled ``stack.yaml`` with what this machine needs:
a project name of its own, a self-signed certificate, the edge on free ports
(Swarm publishes on every interface; nothing but loopback is ever sent load),
the images this engine has (the offline stand-ins' tags), and no dashboard
(its Next.js build needs the npm registry).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ops.plan.verify import self_signed_cert
from ops.proc import free_port
from tests.support.stacks import BUNDLED, REPO

DOCKER = "docker"
WITHOUT = ("dashboard", "cadvisor", "node-exporter")


def build_images(root: Path, timeout: float = 3000) -> dict[str, str]:
    """Build (or reuse, by content tag) every image the bundled stack needs here:
    service name -> the tag to run (the content tag, or the offline stand-in's)."""
    from tests.support.cli import Cli

    scratch = root / "images"
    scratch.mkdir()
    (scratch / "services").symlink_to(REPO / "services")
    (scratch / "stack.yaml").write_text(BUNDLED.read_text())
    without = [a for name in WITHOUT for a in ("--without", name)]
    proc = Cli.in_dir(scratch).run(
        "images", "build", "--offline", *without, "--format", "json", timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r["service"]: r["use"] for r in json.loads(proc.stdout)}


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.stderr.strip() or proc.stdout}")
    return proc


def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()


@contextlib.contextmanager
def one_node_swarm(label: str) -> Iterator[str]:
    """The node's id, with ``label=true`` on it, in a swarm this created if there was none."""
    created = False
    if swarm_state() == "inactive":
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        created = True
    node = docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
    try:
        docker("node", "update", "--label-add", f"{label}=true", node)
        yield node
    finally:
        if created:
            docker("swarm", "leave", "--force", check=False)
        else:
            docker("node", "update", "--label-rm", label, node, check=False)


@dataclass(frozen=True)
class SwarmSite:
    root: Path
    project: str
    https: str
    https_port: int
    certificate: Path
    scenarios: Path

    @property
    def stack_file(self) -> Path:
        return self.root / "swarm" / "docker-stack.yml"

    def service(self, name: str) -> str:
        return f"{self.project}_{name}"


SCENARIOS = """\
scenarios:
  swarm-update:
    description: the agent through the edge while Swarm replaces its tasks.
    locustfile: vots.py
    user_classes: [AgentUser]
    users: 8
    spawn_rate: 8
    duration: {duration}
    arrival_rate: 10/s
    slo:
      overall: ["error_rate < 0.01%"]
"""


def swarm_site(
    root: Path, project: str, images: dict[str, str], duration: str = "150s"
) -> SwarmSite:
    """Write ``root/stack.yaml`` (and the scenarios) for a swarm deployment of ``project``;
    ``images`` maps a service to the image this engine has for it (``images build``)."""
    (root / "services").symlink_to(REPO / "services")
    lt = root / "loadtests"
    lt.mkdir()
    (lt / "vots.py").write_text((REPO / "loadtests" / "vots.py").read_text())
    (lt / "scenarios.yaml").write_text(SCENARIOS.format(duration=duration))
    data = yaml.safe_load(BUNDLED.read_text())
    cert, key = self_signed_cert(root / "tls", data["domain"])
    ports = {"http": free_port(), "https": free_port()}
    data["project"] = project
    data["tls"] = {"certificate": str(cert), "key": str(key)}
    data["edge"].update(bind="0.0.0.0", http_port=ports["http"], https_port=ports["https"])
    data["monitoring"].update(node_exporter=False, cadvisor=False)
    del data["services"]["dashboard"]
    for name, svc in data["services"].items():
        svc["depends_on"] = [d for d in svc.get("depends_on", []) if d != "dashboard"]
        if name in images:
            svc["image"] = images[name]
    if "nginx" in images:
        data["edge"]["image"] = images["nginx"]
    if "prometheus" in images:
        data["monitoring"]["prometheus"] = {"image": images["prometheus"]}
    (root / "stack.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return SwarmSite(
        root,
        project,
        f"https://127.0.0.1:{ports['https']}",
        ports["https"],
        cert,
        lt / "scenarios.yaml",
    )


def deploy(site: SwarmSite) -> None:
    docker(
        "stack", "deploy", "--compose-file", str(site.stack_file), "--prune",
        "--resolve-image", "never", site.project, timeout=300,
    )  # fmt: skip


def services(site: SwarmSite) -> list[dict[str, Any]]:
    ids = docker(
        "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={site.project}"
    ).stdout.split()
    if not ids:
        return []
    out: list[dict[str, Any]] = json.loads(docker("service", "inspect", *ids).stdout)
    return out


def tasks(site: SwarmSite, service: str) -> list[dict[str, Any]]:
    """The service's tasks that should be running now."""
    ids = docker(
        "service", "ps", "-q", "--filter", "desired-state=running", site.service(service)
    ).stdout.split()
    if not ids:
        return []
    out: list[dict[str, Any]] = json.loads(docker("inspect", *ids).stdout)
    return out


def task_containers(site: SwarmSite, service: str) -> list[dict[str, Any]]:
    ids = [
        t["Status"]["ContainerStatus"]["ContainerID"]
        for t in tasks(site, service)
        if t["Status"].get("ContainerStatus", {}).get("ContainerID")
    ]
    if not ids:
        return []
    out: list[dict[str, Any]] = json.loads(docker("inspect", *ids).stdout)
    return out


def converged(site: SwarmSite, names: Sequence[str]) -> dict[str, str]:
    """Each service's ``running healthy/desired``, and whether it has converged."""
    state: dict[str, str] = {}
    by_name = {s["Spec"]["Name"]: s for s in services(site)}
    for name in names:
        spec = by_name.get(site.service(name))
        if spec is None:
            state[name] = "missing"
            continue
        want = spec["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 1)
        running = [t for t in tasks(site, name) if t["Status"]["State"] == "running"]
        healthy = 0
        for c in task_containers(site, name):
            h = c["State"].get("Health", {}).get("Status", "none")
            if c["State"]["Running"] and h in ("healthy", "none"):
                healthy += 1
        update = (spec.get("UpdateStatus") or {}).get("State", "")
        ok = (
            len(running) == want
            and healthy == want
            and update not in ("updating", "rollback_started")
        )
        state[name] = f"{'ok' if ok else 'waiting'} {healthy}/{want} {update}".strip()
    return state


def wait_converged(site: SwarmSite, names: Sequence[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        state = converged(site, names)
        if all(s.startswith("ok") for s in state.values()):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the stack did not converge in {timeout:.0f}s: {state}")
        time.sleep(2)


def update_started(site: SwarmSite, service: str) -> str:
    """When the service's last update started ("" if it never had one)."""
    spec = json.loads(docker("service", "inspect", site.service(service)).stdout)[0]
    return str((spec.get("UpdateStatus") or {}).get("StartedAt", ""))


def wait_update(site: SwarmSite, service: str, timeout: float, before: str = "") -> str:
    """The final state (``completed``, ``rollback_completed``, ``paused``…) of an update
    that started after ``before`` (what ``update_started`` said before it)."""
    deadline = time.monotonic() + timeout
    while True:
        spec = json.loads(docker("service", "inspect", site.service(service)).stdout)[0]
        status = spec.get("UpdateStatus") or {}
        state = status.get("State", "")
        fresh = status.get("StartedAt", "") != before
        if fresh and state and state not in ("updating", "rollback_started"):
            return str(state)
        if time.monotonic() > deadline:
            raise AssertionError(f"{service}: update still {state!r} after {timeout:.0f}s")
        time.sleep(2)


def remove(site: SwarmSite, timeout: float = 180) -> list[str]:
    """Remove the stack and wait until its containers and networks are gone; then its
    volumes. What is left (should be nothing) is returned."""
    label = f"label=com.docker.stack.namespace={site.project}"
    docker("stack", "rm", site.project, check=False, timeout=120)
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [
            f"{kind} {name}"
            for kind in ("container", "network")
            for name in docker(
                kind, "ls", "-aq" if kind == "container" else "-q", "--filter", label, check=False
            ).stdout.split()
        ]
        if not left:
            break
        time.sleep(2)
    vols = docker("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
    for _ in range(10):
        if not vols or docker("volume", "rm", *vols, check=False).returncode == 0:
            break
        time.sleep(2)
    vols = docker("volume", "ls", "-q", "--filter", label, check=False).stdout.split()
    return left + [f"volume {v}" for v in vols]
