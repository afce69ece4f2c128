"""The edge, end to end: the real nginx image from services/edge, started by the
rendered docker-compose.yml with the rendered nginx.conf, in front of a real app.

The base image is a local debootstrap (tests/support/base_image.py), the edge
image is built from ``services/edge/Dockerfile`` on top of it (cached by a tag
derived from the Dockerfile and the base image), and the app is the busybox
image serving a page through ``httpd``. Every service of the rendered compose
file starts (nginx waits for the app's health check), then the test checks
what Docker applied (health, read-only root, capabilities, limits, loopback-only
ports) and what a client sees (HTTP/2 over TLS through nginx, security headers,
the HTTP->HTTPS redirect). Only loopback traffic; always torn down.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.files import write_all
from ops.plan import fit
from ops.plan.capacity import Allocation, Plan
from ops.plan.render import render_files
from ops.plan.verify import self_signed_cert
from ops.proc import free_port
from ops.stack import LoadedStack, Workload, load_stack, workloads
from tests.support.base_image import debian_base_image, file_lock, image_exists
from tests.support.docker import (
    compose_down,
    inspect,
    ok,
    project_containers,
    run,
    wait_healthy,
)
from tests.support.images import busybox_image
from tests.support.service_images import remove_stale_images
from tests.support.stacks import REPO, minimal, write_stack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

EDGE_CONTEXT = REPO / "services" / "edge"
BUILD_TIMEOUT = 900.0
UP_TIMEOUT = 300.0
HEALTH_WAIT = 90.0  # the edge health check runs every 15 s
DOMAIN = "vots.test"
CSP = "frame-ancestors 'none'"


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def _timing(message: str) -> None:
    print(f"[timing] {message}", file=sys.stderr)


# --------------------------------------------------------------------------- the edge image


def _image_id(docker: str, tag: str) -> str:
    return ok([docker, "image", "inspect", "--format", "{{.Id}}", tag]).strip()


def edge_image() -> str:
    """``services/edge`` built on the local Debian base, tagged by what went into it."""
    docker = _tool("docker")
    start = time.monotonic()
    base = debian_base_image()
    _timing(f"base image ready in {time.monotonic() - start:.1f}s")
    h = hashlib.sha256((EDGE_CONTEXT / "Dockerfile").read_bytes())
    h.update(_image_id(docker, base).encode())  # a rebuilt base means a rebuilt edge
    tag = f"vots-ops-test/edge:{h.hexdigest()[:16]}"
    if image_exists(docker, tag):
        return tag
    with file_lock("vots-ops-test-edge"):
        if image_exists(docker, tag):
            return tag
        start = time.monotonic()
        # The engine is 20.10 and there is no buildx: the classic builder, explicitly.
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        ok(
            [
                docker, "build",
                "--build-arg", f"BASE_IMAGE={base}",
                "--label", "io.vots.test=edge",
                "-t", tag,
                str(EDGE_CONTEXT),
            ],
            timeout=BUILD_TIMEOUT,
            env=env,
        )  # fmt: skip
        _timing(f"built {tag} in {time.monotonic() - start:.1f}s")
        # Edge images from an older Dockerfile or base, once a week old.
        remove_stale_images("vots-ops-test/edge", "io.vots.test=edge", keep=tag)
    assert image_exists(docker, tag), f"docker build did not produce {tag}"
    return tag


# --------------------------------------------------------------------------- the deployment


@dataclass
class Deployed:
    loaded: LoadedStack
    plan: Plan
    project: str
    http_port: int
    https_port: int
    certificate: Path
    marker: str
    containers: dict[str, dict[str, Any]]  # service -> docker inspect (one replica each)
    health: dict[str, str]  # container name -> health status after waiting
    logs: str

    def alloc(self, service: str) -> Allocation:
        return self.plan.by_name()[service]

    def workload(self, service: str) -> Workload:
        return {w.name: w for w in workloads(self.loaded.stack)}[service]

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))


def _stack_data(
    edge: str, app: str, tls: tuple[Path, Path], ports: tuple[int, int], page: str
) -> dict[str, Any]:
    cert, key = tls
    http_port, https_port = ports
    # The busybox root is read-only, so the page is written to the app's /tmp tmpfs.
    # "$PAGE" reaches sh intact only if the compose file escaped it ($$) correctly.
    script = (
        "mkdir -p /tmp/www && cat /www/healthz > /tmp/www/healthz"
        ' && echo "$PAGE" > /tmp/www/index.html'
        " && exec httpd -f -p 8000 -h /tmp/www"
    )
    return minimal(
        project="votsedge",
        host={"cpus": "auto", "memory": "4G", "reserve": {"cpus": 0.25, "memory": "512M"}},
        domain=DOMAIN,
        tls={"certificate": str(cert), "key": str(key)},
        edge={
            "image": edge,
            "bind": "127.0.0.1",
            "http_port": http_port,
            "https_port": https_port,
            "headers": {"Content-Security-Policy": CSP},
        },
        services={
            "web": {
                "image": app,
                "language": "go",
                "port": 8000,
                "replicas": 1,
                "command": ["sh", "-c", script],
                "environment": {"PAGE": page},
                "resources": {
                    "cpu": {"min": "100m", "max": 0.5},
                    "memory": {"min": "16M", "max": "64M"},
                    "pids": 64,
                },
                "health": {
                    "path": "/healthz",
                    "interval": "1s",
                    "timeout": "2s",
                    "start_period": "1s",
                },
                "routes": [{"path": "/"}],
            },
        },
        monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False},
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    docker = _tool("docker")
    compose = _tool("docker-compose")
    edge = edge_image()
    app = busybox_image()
    root = tmp_path_factory.mktemp("edge-container")
    cert, key = self_signed_cert(root / "tls", DOMAIN)
    marker = f"served by busybox httpd behind the edge {uuid.uuid4().hex}"
    ports = (free_port(), free_port())
    assert ports[0] != ports[1]
    loaded = load_stack(write_stack(root, _stack_data(edge, app, (cert, key), ports, marker)))
    plan = fit(loaded)
    out = root / "out"
    write_all(out, render_files(loaded, plan, out))
    project = f"votsedgetest{uuid.uuid4().hex[:12]}"
    base = [compose, "-p", project, "-f", str(out / "docker-compose.yml")]
    start = time.monotonic()
    try:
        up = run([*base, "up", "-d", "--no-build"], cwd=out, timeout=UP_TIMEOUT)
        ids = project_containers(docker, project)
        health = wait_healthy(docker, ids, HEALTH_WAIT) if up.returncode == 0 else {}
        _timing(f"compose up + healthy in {time.monotonic() - start:.1f}s: {health}")
        logs = run([*base, "logs", "--no-color", "--tail", "200"], cwd=out).stdout
        assert up.returncode == 0, f"docker-compose up failed:\n{up.stderr}\n{logs}"
        containers = {
            c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspect(docker, ids)
        }
        yield Deployed(
            loaded, plan, project, ports[0], ports[1], cert, marker, containers, health, logs
        )
    finally:
        compose_down(base, docker, project, cwd=out, timeout=UP_TIMEOUT)


# --------------------------------------------------------------------------- what Docker applied


def test_every_service_runs_and_nginx_is_healthy(deployed: Deployed) -> None:
    assert set(deployed.containers) == {"web", "nginx"}
    for service, c in deployed.containers.items():
        assert c["State"]["Running"], f"{service}: {c['State']}\n{deployed.logs}"
    nginx = deployed.containers["nginx"]
    assert deployed.health[nginx["Name"]] == "healthy", f"{deployed.health}\n{deployed.logs}"
    assert deployed.health[deployed.containers["web"]["Name"]] == "healthy"
    # The health check is the compose one: curl on the internal stub_status port.
    test = nginx["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD" and "curl" in test[1], test
    assert test[-1] == "http://127.0.0.1:8081/nginx_status"


def test_nginx_is_hardened(deployed: Deployed) -> None:
    c = deployed.containers["nginx"]
    host = c["HostConfig"]
    w = deployed.workload("nginx")
    assert c["Config"]["Image"] == deployed.loaded.stack.edge.image
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"] or []) == sorted(w.cap_add)
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Privileged"] is False
    assert set(host["Tmpfs"] or {}) == set(w.tmpfs)
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert c["Config"]["Labels"]["io.vots.role"] == "edge"


@pytest.mark.parametrize("service", ["nginx", "web"])
def test_limits_are_the_plan(deployed: Deployed, service: str) -> None:
    c = deployed.containers[service]
    a = deployed.alloc(service)
    host = c["HostConfig"]
    assert host["NanoCpus"] == a.cpu_limit * 1_000_000
    assert host["Memory"] == a.mem_limit
    assert host["MemoryReservation"] == a.mem_reservation
    assert host["PidsLimit"] == a.pids
    assert host["CpuShares"] == a.cpu_shares


def test_ports_are_published_on_loopback_only(deployed: Deployed) -> None:
    nginx = deployed.containers["nginx"]
    expected = {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployed.http_port)}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployed.https_port)}],
    }
    assert nginx["HostConfig"]["PortBindings"] == expected
    published = {
        port: [{"HostIp": b["HostIp"], "HostPort": b["HostPort"]} for b in bindings]
        for port, bindings in (nginx["NetworkSettings"]["Ports"] or {}).items()
        if bindings
    }
    assert published == expected, "the stub_status port 8081 must not be published"
    for service, c in deployed.containers.items():
        for bindings in (c["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (service, b)
    web = deployed.containers["web"]
    assert not web["HostConfig"]["PortBindings"]


# --------------------------------------------------------------------------- what a client sees


def _assert_security_headers(headers: httpx.Headers) -> None:
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["permissions-policy"] == "camera=(), microphone=(), geolocation=()"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers.get_list("content-security-policy") == [CSP]
    assert headers["server"] == "nginx"  # server_tokens off: no version


@pytest.mark.timeout(60)
def test_https_http2_through_nginx_to_the_app(deployed: Deployed) -> None:
    base = f"https://127.0.0.1:{deployed.https_port}"
    with httpx.Client(
        http2=True, verify=deployed.ssl_context(), trust_env=False, timeout=10, base_url=base
    ) as client:
        page = client.get("/")
        health = client.get("/healthz")
    assert page.status_code == 200, page.text
    assert page.http_version == "HTTP/2"
    assert page.text == deployed.marker + "\n"
    _assert_security_headers(page.headers)
    assert health.status_code == 200
    assert health.http_version == "HTTP/2"
    assert health.content == b"ok\n"
    _assert_security_headers(health.headers)


@pytest.mark.timeout(60)
def test_https_answers_for_the_domain(deployed: Deployed) -> None:
    """SNI and Host are the stack's domain; the certificate is checked against it."""
    transport = httpx.HTTPTransport(http2=True, verify=deployed.ssl_context())
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        r = client.get(
            f"https://127.0.0.1:{deployed.https_port}/",
            headers={"Host": DOMAIN},
            extensions={"sni_hostname": DOMAIN},
        )
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"
    assert r.text == deployed.marker + "\n"


@pytest.mark.timeout(60)
def test_http_redirects_to_the_published_https_port(deployed: Deployed) -> None:
    with httpx.Client(trust_env=False, timeout=10) as plain:
        r = plain.get(f"http://127.0.0.1:{deployed.http_port}/", follow_redirects=False)
        deep = plain.get(f"http://127.0.0.1:{deployed.http_port}/a/b?q=1", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"https://127.0.0.1:{deployed.https_port}/"
    assert r.headers["server"] == "nginx"
    assert deep.status_code == 301
    assert deep.headers["location"] == f"https://127.0.0.1:{deployed.https_port}/a/b?q=1"
