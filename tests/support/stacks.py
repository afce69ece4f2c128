"""Stack builders for tests: a minimal valid stack and a hypothesis strategy of them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "stack.yaml"

MINIMAL: dict[str, Any] = {
    "host": {"cpus": 2, "memory": "4G", "reserve": {"cpus": 0.25, "memory": "512M"}},
    "domain": "vots.test",
    "tls": {"certificate": "/etc/ssl/vots/cert.pem", "key": "/etc/ssl/vots/key.pem"},
    "services": {
        "agent": {
            "image": "vots/agent:test",
            "language": "python",
            "port": 8000,
            "replicas": 2,
            "resources": {"cpu_weight": 4, "memory": {"min": "128M", "max": "1G"}},
            "health": "/healthz",
            "metrics": "/metrics",
            "routes": [{"path": "/api/v1/", "rate_limit": "20r/s", "burst": 10}],
        },
        "redis": {"image": "redis:7", "language": "datastore", "health": ["redis-cli", "ping"]},
    },
    "monitoring": {"prometheus": True, "node_exporter": False, "cadvisor": False},
}


def minimal(**changes: Any) -> dict[str, Any]:
    """A deep copy of MINIMAL with top-level keys replaced."""
    data = copy.deepcopy(MINIMAL)
    data.update(changes)
    return data


def write_stack(directory: Path, data: dict[str, Any] | str, name: str = "stack.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


_names = st.from_regex(r"[a-z][a-z0-9]{1,8}", fullmatch=True).filter(
    lambda n: n not in {"nginx", "prometheus", "cadvisor", "y", "n", "no", "on", "yes", "off"}
)
_langs = st.sampled_from(["python", "go", "rust", "node", "static", "datastore"])


@st.composite
def services(draw: Any, n_max: int = 8) -> dict[str, Any]:
    names = draw(st.lists(_names, min_size=1, max_size=n_max, unique=True))
    out: dict[str, Any] = {}
    used_paths: set[str] = set()
    for i, name in enumerate(names):
        lang = draw(_langs)
        cpu_min = draw(st.integers(10, 1000))
        mem_min = draw(st.integers(6, 1024))
        svc: dict[str, Any] = {
            "image": f"vots/{name}:1",
            "language": lang,
            "port": 8000 + i,
            "replicas": draw(st.integers(1, 4)),
            "resources": {
                "cpu_weight": draw(st.integers(1, 10)),
                "cpu": {"min": f"{cpu_min}m"},
                "memory": {"min": f"{mem_min}M"},
            },
        }
        if draw(st.booleans()):
            svc["resources"]["cpu"]["max"] = f"{cpu_min + draw(st.integers(0, 4000))}m"
        if draw(st.booleans()):
            svc["resources"]["memory"]["max"] = f"{mem_min + draw(st.integers(0, 8192))}M"
        if lang != "datastore":
            path = f"/{name}/"
            if path not in used_paths:
                used_paths.add(path)
                route: dict[str, Any] = {"path": path}
                if draw(st.booleans()):
                    route["rate_limit"] = f"{draw(st.integers(1, 500))}r/s"
                kind = draw(st.sampled_from(["plain", "cache", "immutable"]))
                if kind == "cache":
                    route["cache"] = f"{draw(st.integers(1, 30))}s"
                elif kind == "immutable":
                    route["immutable"] = True
                svc["routes"] = [route]
            if draw(st.booleans()):
                svc["health"] = "/healthz"
                svc["metrics"] = "/metrics"
        out[name] = svc
    return out


@st.composite
def stacks(draw: Any) -> dict[str, Any]:
    """Random, schema-valid stacks; some do not fit their host, on purpose."""
    cpus = draw(st.integers(1, 64))
    mem_gib = draw(st.integers(1, 256))
    data = minimal(
        host={
            "cpus": cpus,
            "memory": f"{mem_gib}G",
            "reserve": {
                "cpus": f"{draw(st.integers(0, 500)) + 1}m",
                "memory": f"{draw(st.integers(1, 1024))}M",
            },
            "cpu_overcommit": draw(st.sampled_from([1, 1.5, 2])),
        },
        services=draw(services()),
        monitoring={
            "prometheus": draw(st.booleans()),
            "node_exporter": draw(st.booleans()),
            "cadvisor": draw(st.booleans()),
        },
    )
    return data
