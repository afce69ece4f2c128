"""CIS Docker Benchmark v1.6.0, section 5 (container runtime), for the bundled stack.

Reads the committed docker-compose.yml (``plan --check`` keeps it equal to what
``plan`` renders from stack.yaml) and checks, per service, every section 5 rule
a compose file can express. A failure names the rule and the service. The
exceptions below are the only ones; each carries its reason, is listed in the
README's CIS table, and is checked to still be needed.

Not expressible in a compose file, so not checked here: 5.6 (no sshd in the
container), 5.22 and 5.23 (``docker exec`` flags), 5.27 (image freshness).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support.stacks import REPO

COMPOSE = REPO / "docker-compose.yml"
README = REPO / "README.md"

EXCEPTIONS: dict[tuple[str, str], str] = {
    (
        "5.5",
        "node-exporter",
    ): "reads the host's filesystems (/ read-only at /host): that is what it measures",
    ("5.5", "cadvisor"): "reads /, /sys and /var/lib/docker read-only: every container's usage",
    ("5.7", "nginx"): "the edge serves HTTP and HTTPS on the host's ports 80 and 443",
    (
        "5.13",
        "nginx",
    ): "the public entry point binds edge.bind (0.0.0.0 by default); set the VM's address",
    ("5.15", "node-exporter"): "pid: host, so that process and host metrics are the host's",
    ("5.31", "cadvisor"): "reads container metadata from the Docker socket, mounted read-only",
}

SENSITIVE = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")


def _opts(svc: dict[str, Any]) -> list[str]:
    return [str(o).replace("=", ":") for o in svc.get("security_opt", [])]


def _host_mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, options) of every bind mount of an absolute host path."""
    out = []
    for v in svc.get("volumes", []):
        parts = str(v).split(":")
        if parts[0].startswith("/"):
            out.append((parts[0].rstrip("/") or "/", parts[2] if len(parts) > 2 else ""))
    return out


def _ports(svc: dict[str, Any]) -> list[list[str]]:
    return [str(p).split(":") for p in svc.get("ports", [])]


def _sensitive(source: str) -> bool:
    return any(source == d or (d != "/" and source.startswith(d + "/")) for d in SENSITIVE)


Rule = Callable[[dict[str, Any]], bool]
RULES: dict[str, tuple[str, Rule]] = {
    "5.1": ("AppArmor is not disabled", lambda s: "apparmor:unconfined" not in _opts(s)),
    "5.2": ("SELinux labels are not disabled", lambda s: "label:disable" not in _opts(s)),
    "5.3": (
        "capabilities are dropped (cap_drop: ALL) and none of the broad ones added",
        lambda s: (
            s.get("cap_drop") == ["ALL"]
            and not {"ALL", "SYS_ADMIN", "NET_ADMIN"} & set(s.get("cap_add", []))
        ),
    ),
    "5.4": ("not privileged", lambda s: not s.get("privileged", False)),
    "5.5": (
        "no sensitive host directory is mounted",
        lambda s: not any(_sensitive(src) for src, _ in _host_mounts(s)),
    ),
    "5.7": (
        "no privileged host port is mapped",
        lambda s: all(int(p[-2]) >= 1024 for p in _ports(s)),
    ),
    "5.8": (
        "only the edge and Prometheus publish ports",
        lambda s: not s.get("ports") or s["labels"]["io.vots.role"] in ("edge", "prometheus"),
    ),
    "5.9": (
        "the host's network namespace is not shared",
        lambda s: s.get("network_mode") != "host",
    ),
    "5.10": (
        "memory is limited",
        lambda s: bool(s["deploy"]["resources"]["limits"].get("memory")),
    ),
    "5.11": (
        "CPU priority and limit are set",
        lambda s: (
            bool(s.get("cpu_shares")) and bool(s["deploy"]["resources"]["limits"].get("cpus"))
        ),
    ),
    "5.12": ("the root filesystem is read-only", lambda s: s.get("read_only") is True),
    "5.13": (
        "published ports are bound to one host interface",
        lambda s: all(len(p) == 3 and p[0] not in ("", "0.0.0.0") for p in _ports(s)),
    ),
    "5.14": ("restart on failure at most 5 times", lambda s: s.get("restart") == "on-failure:5"),
    "5.15": ("the host's PID namespace is not shared", lambda s: s.get("pid") != "host"),
    "5.16": ("the host's IPC namespace is not shared", lambda s: s.get("ipc") != "host"),
    "5.17": ("no host device is exposed", lambda s: not s.get("devices")),
    "5.18": ("default ulimits are kept", lambda s: not s.get("ulimits")),
    "5.19": (
        "no mount propagation is shared",
        lambda s: (
            not any(
                "shared" in opts.split(",") or "rshared" in opts.split(",")
                for _, opts in _host_mounts(s)
            )
        ),
    ),
    "5.20": ("the host's UTS namespace is not shared", lambda s: s.get("uts") != "host"),
    "5.21": ("the default seccomp profile is kept", lambda s: "seccomp:unconfined" not in _opts(s)),
    "5.24": ("the default cgroup is used", lambda s: not s.get("cgroup_parent")),
    "5.25": ("no new privileges", lambda s: "no-new-privileges:true" in _opts(s)),
    "5.26": (
        "a healthcheck runs",
        lambda s: (
            bool(s.get("healthcheck", {}).get("test"))
            and not s["healthcheck"].get("disable")
            and s["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        ),
    ),
    "5.28": ("the PIDs cgroup limit is set", lambda s: int(s.get("pids_limit", 0)) > 0),
    "5.29": (
        "not on Docker's default bridge",
        lambda s: bool(s.get("networks")) and s.get("network_mode") in (None, ""),
    ),
    "5.30": ("the host's user namespace is not shared", lambda s: s.get("userns_mode") != "host"),
    "5.31": (
        "the Docker socket is not mounted",
        lambda s: not any("docker.sock" in str(v) for v in s.get("volumes", [])),
    ),
}


def _services() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, dict[str, Any]] = doc["services"]
    return services


SERVICES = sorted(_services())


def test_the_bundled_stack_renders_every_service_cis_looks_at() -> None:
    assert set(SERVICES) == {
        "agent",
        "rag",
        "dashboard",
        "redis",
        "chroma",
        "nginx",
        "prometheus",
        "node-exporter",
        "cadvisor",
    }


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("rule", list(RULES))
def test_cis_docker_benchmark_section_5(rule: str, service: str) -> None:
    if (rule, service) in EXCEPTIONS:
        pytest.skip(f"CIS {rule} exception for {service}: {EXCEPTIONS[(rule, service)]}")
    title, check = RULES[rule]
    assert check(_services()[service]), f"CIS {rule} ({title}) fails for service {service}"


@pytest.mark.parametrize(
    ("rule", "service"), list(EXCEPTIONS), ids=[f"{r}-{s}" for r, s in EXCEPTIONS]
)
def test_every_exception_is_still_needed_and_in_the_readme(rule: str, service: str) -> None:
    _, check = RULES[rule]
    assert not check(_services()[service]), (
        f"CIS {rule} now passes for {service}: drop the exception here and in the README"
    )
    assert f"| {rule} | {service} |" in README.read_text(), (
        f"the README's CIS table does not list the {rule} exception for {service}"
    )


def test_the_rules_can_fail() -> None:
    """A service stripped of its hardening fails the rules that protect it."""
    bare = {"deploy": {"resources": {"limits": {}}}, "labels": {"io.vots.role": "app"}}
    bare |= {"privileged": True, "network_mode": "host", "ports": ["80:80"]}
    failing = {rule for rule, (_, check) in RULES.items() if not check(bare)}
    assert failing >= {
        "5.3",
        "5.4",
        "5.7",
        "5.8",
        "5.9",
        "5.10",
        "5.11",
        "5.12",
        "5.13",
        "5.14",
        "5.25",
        "5.26",
        "5.28",
        "5.29",
    }


def test_the_dashboard_and_chroma_can_write_where_they_must() -> None:
    """Read-only roots keep writable places: tmpfs or a volume for what the service writes."""
    services = _services()
    assert "/app/.next/cache" in services["dashboard"]["tmpfs"]  # Next.js' cache
    assert "chroma.data:/data" in services["chroma"]["volumes"]
    assert services["chroma"]["healthcheck"]["test"][:2] == ["CMD", "python"]
