"""The bundled stack made runnable on this machine, for the loop test and bench/deploy.py.

What changes from the bundled ``stack.yaml``, and nothing else: a self-signed
certificate, the edge and Prometheus on free loopback ports, a project name of
its own, redis with its offline stand-in. ``services`` is a link to the
repository's (the build contexts). ``WITHOUT`` is what has no image here.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from ops.plan.verify import self_signed_cert
from ops.proc import free_port
from tests.support.stacks import BUNDLED, REPO


def root_is_shared() -> bool:
    proc = subprocess.run(
        ["findmnt", "-n", "-o", "PROPAGATION", "/"], capture_output=True, text=True, check=False
    )
    return "shared" in proc.stdout


# dashboard: a Next.js build needs the npm registry; cadvisor: no registry and no Debian
# package; node-exporter: its `/:/host:ro,rslave` bind needs `/` to be a shared mount.
WITHOUT = ["dashboard", "cadvisor"] + ([] if root_is_shared() else ["node-exporter"])
WITHOUT_ARGS = [a for name in WITHOUT for a in ("--without", name)]

SCENARIOS = """\
scenarios:
  through-edge:
    description: agent and rag through the edge, below its per-client rate limits.
    locustfile: vots.py
    user_classes: [AgentUser, RagUser]
    users: 8
    spawn_rate: 8
    duration: 20s
    arrival_rate: 12/s
    slo:
      overall: ["error_rate < 1%", "p(95) < 2s"]
  agent-redeploy:
    description: the agent through the edge while its replicas are replaced.
    locustfile: vots.py
    user_classes: [AgentUser]
    users: 8
    spawn_rate: 8
    duration: 150s
    arrival_rate: 10/s
    slo:
      overall: ["error_rate < 0.01%"]
  limits-redeploy:
    description: agent and rag through the edge while every service gets new limits.
    locustfile: vots.py
    user_classes: [AgentUser, RagUser]
    users: 8
    spawn_rate: 8
    duration: 120s
    arrival_rate: 10/s
    slo:
      overall: ["error_rate < 0.01%"]
"""


@dataclass(frozen=True)
class LoopSite:
    root: Path
    project: str
    https: str
    prometheus: str
    certificate: Path
    scenarios: Path


def make_site(root: Path, project: str) -> LoopSite:
    (root / "services").symlink_to(REPO / "services")
    lt = root / "loadtests"
    lt.mkdir()
    (lt / "vots.py").write_text((REPO / "loadtests" / "vots.py").read_text())
    (lt / "scenarios.yaml").write_text(SCENARIOS)
    ports = {"http": free_port(), "https": free_port(), "prometheus": free_port()}
    data = yaml.safe_load(BUNDLED.read_text())
    cert, key = self_signed_cert(root / "tls", data["domain"])
    data["project"] = project
    data["tls"] = {"certificate": str(cert), "key": str(key)}
    data["edge"].update(bind="127.0.0.1", http_port=ports["http"], https_port=ports["https"])
    data["monitoring"]["port"] = ports["prometheus"]
    data["services"]["redis"]["offline"] = "redis"
    (root / "stack.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return LoopSite(
        root,
        project,
        f"https://127.0.0.1:{ports['https']}",
        f"http://127.0.0.1:{ports['prometheus']}",
        cert,
        lt / "scenarios.yaml",
    )
