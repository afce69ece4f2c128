"""The rendered docker-compose.yml: accepted by the compose-spec schema and by
docker-compose itself, and shaped the way the security model says.

Checked for the bundled stack.yaml and for hypothesis-generated stacks.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

from ops.errors import CapacityError, SpecError
from ops.plan import fit
from ops.plan.capacity import Plan
from ops.plan.render import render_files
from ops.plan.verify import verify_plan
from ops.stack import LoadedStack, load_stack, workloads
from tests.support.stacks import BUNDLED, minimal, stacks, write_stack

CHECKS = ["compose-schema", "docker-compose"]
_SECRETISH = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
_URL_CREDENTIALS = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
_MEM_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _mem(value: Any) -> int:
    m = re.fullmatch(r"(\d+)([bkmgBKMG])", str(value))
    assert m, f"unexpected compose memory value {value!r}"
    return int(m.group(1)) * _MEM_UNITS[m.group(2).lower()]


def _millicores(value: Any) -> int:
    assert isinstance(value, str), f"cpus should be a quoted string, got {value!r}"
    return round(float(value) * 1000)


def _render(loaded: LoadedStack, plan: Plan, out: Path) -> dict[str, Any]:
    text = render_files(loaded, plan, out)["docker-compose.yml"]
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _verify(loaded: LoadedStack, plan: Plan, workdir: Path) -> None:
    results = verify_plan(loaded, plan, workdir, checks=CHECKS)
    assert [r.name for r in results] == CHECKS
    for r in results:
        assert r.ok, f"{r.name} rejected the compose file:\n{r.output}"


def assert_compose_shape(doc: dict[str, Any], loaded: LoadedStack, plan: Plan) -> None:
    stack = loaded.stack
    items = {w.name: w for w in workloads(stack)}
    alloc = plan.by_name()

    assert "version" not in doc, "the compose-spec format has no version key"
    assert set(doc) == {"services", "networks", "volumes", "secrets"}
    services: dict[str, Any] = doc["services"]
    assert set(services) == set(items)
    assert doc["networks"]["backend"] == {"internal": True}
    assert not doc["networks"]["frontend"] or not doc["networks"]["frontend"].get("internal")

    for name, svc in services.items():
        w, a = items[name], alloc[name]
        where = f"services.{name}"
        assert svc["cap_drop"] == ["ALL"], where
        assert sorted(svc.get("cap_add", [])) == sorted(w.cap_add), where
        assert svc["security_opt"] == ["no-new-privileges:true"], where
        assert svc["restart"] == "on-failure:5", where
        assert svc["read_only"] is w.read_only, where
        assert "/tmp" in svc["tmpfs"], where
        assert "privileged" not in svc, where
        assert svc["pids_limit"] == a.pids, where
        assert svc["cpu_shares"] == a.cpu_shares, where

        deploy = svc["deploy"]
        assert deploy["replicas"] == a.replicas, where
        limits, reservations = deploy["resources"]["limits"], deploy["resources"]["reservations"]
        assert set(limits) == {"cpus", "memory"}, where
        assert set(reservations) == {"cpus", "memory"}, where
        assert _millicores(limits["cpus"]) == a.cpu_limit, where
        assert _mem(limits["memory"]) == a.mem_limit, where
        assert _millicores(reservations["cpus"]) == a.cpu_reservation, where
        assert _mem(reservations["memory"]) == a.mem_reservation, where
        assert a.cpu_reservation <= a.cpu_limit and a.mem_reservation <= a.mem_limit, where

        logging = svc["logging"]
        assert logging["driver"] == "json-file", where
        assert re.fullmatch(r"\d+[kmg]", logging["options"]["max-size"]), where
        assert re.fullmatch(r"\d+", logging["options"]["max-file"]), where

        assert svc["labels"]["io.vots.role"] == w.kind, where
        if w.image:
            assert svc["image"] == w.image, where

        # Only nginx is published on every interface; Prometheus only on loopback.
        ports = svc.get("ports", [])
        if name == "nginx":
            assert ports and all(p.startswith(f"{stack.edge.bind}:") for p in ports), where
            assert stack.edge.bind == "0.0.0.0"
        elif name == "prometheus":
            assert ports and all(p.startswith("127.0.0.1:") for p in ports), where
        else:
            assert not ports, f"{where} must not publish ports"
            if w.kind in ("app", "datastore") and w.port:
                assert svc["expose"] == [str(w.port)], where

        networks = svc["networks"]
        if w.kind == "datastore":
            assert networks == ["backend"], f"{where}: a datastore is only on the internal network"
        elif w.kind == "app":
            assert networks == (["backend"] if w.internal else ["frontend", "backend"]), where
        elif w.kind == "edge":
            assert networks == ["frontend"], where
        elif w.kind in ("node-exporter", "cadvisor"):
            assert networks == ["backend"], where

        # The Docker socket is for cadvisor alone, and read-only.
        for volume in svc.get("volumes", []):
            if "docker.sock" in volume:
                assert name == "cadvisor", f"{where} mounts the Docker socket"
                assert volume.endswith(":ro"), f"{where} mounts the Docker socket writable"
        if name == "cadvisor":
            assert "/var/run/docker.sock:/var/run/docker.sock:ro" in svc["volumes"]

        # No secret travels as an environment value: only *_FILE paths to /run/secrets.
        for key, value in (svc.get("environment") or {}).items():
            assert isinstance(value, str), f"{where}.environment.{key}"
            if _SECRETISH.search(key):
                assert key.endswith("_FILE") and value.startswith("/run/secrets/"), (
                    f"{where}.environment.{key}"
                )
            assert not _URL_CREDENTIALS.search(value), (
                f"{where}.environment.{key} embeds credentials"
            )
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"], where

    monitoring = stack.monitoring
    assert ("prometheus" in services) is monitoring.prometheus.enabled
    assert ("cadvisor" in services) is monitoring.cadvisor.enabled
    assert ("node-exporter" in services) is monitoring.node_exporter.enabled
    if not monitoring.cadvisor.enabled:
        assert "docker.sock" not in yaml.safe_dump(doc)


def test_bundled_stack_compose_is_valid(tmp_path: Path) -> None:
    loaded = load_stack(BUNDLED)
    plan = fit(loaded)
    _verify(loaded, plan, tmp_path / "verify")
    doc = _render(loaded, plan, tmp_path)
    assert_compose_shape(doc, loaded, plan)
    services = doc["services"]
    # The bundled stack's only file secrets are the edge's TLS certificate and key.
    assert {n: s["secrets"] for n, s in services.items() if s.get("secrets")} == {
        "nginx": ["tls_certificate", "tls_key"]
    }
    assert set(doc["secrets"]) == {"tls_certificate", "tls_key"}
    assert {"redis", "chroma"} == {
        n for n, s in services.items() if s["labels"]["io.vots.role"] == "datastore"
    }
    assert services["agent"]["deploy"]["replicas"] == 2


def test_bundled_compose_is_deterministic(tmp_path: Path) -> None:
    loaded = load_stack(BUNDLED)
    first = render_files(loaded, fit(loaded), tmp_path)
    second = render_files(load_stack(BUNDLED), fit(load_stack(BUNDLED)), tmp_path)
    assert first == second


def test_shape_check_catches_a_published_app(tmp_path: Path) -> None:
    """The structural check is not vacuous: a leaked port or a missing cap_drop fails it."""
    loaded = load_stack(BUNDLED)
    plan = fit(loaded)
    doc = _render(loaded, plan, tmp_path)
    doc["services"]["agent"]["ports"] = ["0.0.0.0:8000:8000"]
    with pytest.raises(AssertionError, match="must not publish"):
        assert_compose_shape(doc, loaded, plan)
    doc = _render(loaded, plan, tmp_path)
    doc["services"]["redis"]["networks"] = ["frontend", "backend"]
    with pytest.raises(AssertionError, match="only on the internal network"):
        assert_compose_shape(doc, loaded, plan)
    doc = _render(loaded, plan, tmp_path)
    doc["services"]["rag"]["environment"]["CHROMA_URL"] = "http://admin:hunter2@chroma:8000"
    with pytest.raises(AssertionError, match="embeds credentials"):
        assert_compose_shape(doc, loaded, plan)


@pytest.mark.slow  # docker-compose config and the schema check for each example
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=stacks())
def test_generated_stacks_compose_is_valid(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="vots-compose-") as tmp:
        root = Path(tmp)
        # The edge keeps its default build context (services/edge next to the stack);
        # docker-compose v1 refuses a compose file whose build path is missing.
        (root / "services" / "edge").mkdir(parents=True)
        loaded = load_stack(write_stack(root, data))
        try:
            plan = fit(loaded)
        except CapacityError:
            assume(False)
            raise
        out = root / "out"
        assert_compose_shape(_render(loaded, plan, out), loaded, plan)
        _verify(loaded, plan, root / "verify")


@pytest.mark.parametrize(
    "services",
    [
        {
            "db": {"image": "vots/a:1", "language": "datastore", "volumes": {"main-data": "/data"}},
            "db-main": {"image": "vots/b:1", "language": "datastore", "volumes": {"data": "/b"}},
        },
        # A service called "edge" with a volume "cache" would share nginx's edge-cache.
        {"edge": {"image": "vots/e:1", "language": "datastore", "volumes": {"cache": "/c"}}},
    ],
    ids=["service-service", "service-builtin"],
)
def test_volumes_never_shared_between_services(tmp_path: Path, services: dict[str, Any]) -> None:
    data = minimal(
        services=services,
        monitoring={"prometheus": False, "node_exporter": False, "cadvisor": False},
    )
    try:
        loaded = load_stack(write_stack(tmp_path, data))
    except SpecError:
        return  # rejecting the collision up front is a fine fix too
    doc = _render(loaded, fit(loaded), tmp_path)
    owners: dict[str, str] = {}
    for name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source in doc["volumes"]:
                assert owners.setdefault(source, name) == name, f"{source} shared by {name}"
