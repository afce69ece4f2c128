"""Render compose, nginx and Prometheus files from a Plan with Jinja2.

The environment is sandboxed and strict (``StrictUndefined``), and every
expression passes through ``_guard``: a string carrying characters that could
end a directive or a YAML scalar (``; { } " ' $`` or a newline) is refused
unless a quoting filter produced it. Validation in ``ops.stack`` should make
that impossible; the guard makes it impossible even if validation misses one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from ops.errors import RenderError
from ops.plan.capacity import Allocation, Plan
from ops.stack import LoadedStack, Workload, duration_seconds, workloads
from ops.units import format_bytes, format_cpus

OUTPUTS = (
    "docker-compose.yml",
    "nginx/nginx.conf",
    "nginx/upstreams.conf",
    "nginx/ffdhe2048.pem",
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
)
_UNSAFE = set(";{}\"'$`\\\n\r\t")


class Quoted(str):
    """A string a quoting filter produced; the guard lets it through."""


def templates_dir() -> Path:
    """Templates ship inside the wheel (``ops/_data``); a checkout uses ``templates/``."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_data" / "templates"
    if packaged.is_dir():
        return packaged
    return here.parent / "templates"


def edge_context() -> Path:
    """The edge image's build context shipped with vots-ops: ``ops/_data/edge`` in the
    wheel, ``services/edge`` in a checkout (found like ``templates_dir``)."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_data" / "edge"
    if packaged.is_dir():
        return packaged
    return here.parent / "services" / "edge"


#: The image only vots-ops builds: a stack that names it without ``build:`` gets
#: the shipped context, else ``docker-compose up`` would pull an image nobody pushed.
DEFAULT_EDGE_IMAGE = "vots/edge:latest"
_BARE_PATH = re.compile(r"^[A-Za-z0-9._/@+-]+$")


def _edge_build(out_dir: Path) -> str:
    context = edge_context()
    rel = os.path.relpath(context, out_dir)
    text = f"./{rel}" if not rel.startswith("..") else str(context)
    if not _BARE_PATH.fullmatch(text):
        raise RenderError(
            f"the shipped edge build context {context} has characters a compose file "
            "cannot hold unquoted; set edge.build in the stack"
        )
    return text


def _guard(value: Any) -> Any:
    if isinstance(value, Quoted) or not isinstance(value, str):
        return value
    bad = _UNSAFE.intersection(value)
    if bad:
        raise RenderError(
            f"refusing to render {value!r} unquoted (contains {''.join(sorted(bad))!r})"
        )
    return value


def yaml_quote(value: Any) -> Quoted:
    """A YAML double-quoted scalar; ``$`` doubled so compose does not interpolate it."""
    return Quoted(json.dumps(str(value).replace("$", "$$"), ensure_ascii=False))


def nginx_quote(value: Any) -> Quoted:
    """An nginx double-quoted string. nginx has no escape for ``$``, so it is refused."""
    text = str(value)
    if "$" in text or any(ord(c) < 32 for c in text):
        raise RenderError(f"cannot quote {text!r} for nginx ('$' or control character)")
    return Quoted('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


@dataclass(frozen=True)
class NginxRuntime:
    """Where nginx finds things at run time. Defaults are the edge container's;
    tests and benches override ports, paths and upstream addresses."""

    http_listen: str = "80"
    https_listen: str = "443"
    https_port: int | None = None  # port clients use for https; None = the stack's edge.https_port
    status_listen: str = "8081"
    certificate: str = "/run/secrets/tls_certificate"
    key: str = "/run/secrets/tls_key"
    dhparam: str = "/etc/nginx/vots/ffdhe2048.pem"
    upstreams_file: str = "/etc/nginx/vots/upstreams.conf"
    user: str | None = "www-data"
    pid: str = "/run/nginx.pid"
    error_log: str = "/dev/stderr"
    access_log: str = "/dev/stdout"
    temp_dir: str | None = None
    cache_dir: str = "/var/cache/nginx"
    modules_dir: str = "/usr/lib/nginx/modules"
    mime_types: str = "/etc/nginx/mime.types"
    upstreams: Mapping[str, Sequence[str]] = field(default_factory=dict)


def _env() -> Any:
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir())),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_guard,
    )
    env.filters["yq"] = yaml_quote
    env.filters["nq"] = nginx_quote
    env.filters["cpus"] = format_cpus
    env.filters["mem"] = _compose_mem
    return env


def _compose_mem(n: int) -> str:
    """Compose memory value: exact, in the largest whole unit."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}b"


def _rel(target: Path, out_dir: Path) -> str:
    rel = os.path.relpath(target, out_dir)
    return rel if rel.startswith("..") else f"./{rel}" if rel != "." else "."


def _healthcheck(w: Workload) -> dict[str, Any] | None:
    svc = w.spec
    if svc is None or svc.health is None:
        return None
    h = svc.health
    if h.command is not None:
        test = ["CMD", *h.command]
    else:
        url = f"http://127.0.0.1:{w.port}{h.path}"
        lang = svc.language
        if lang == "python":
            code = f"import urllib.request; urllib.request.urlopen('{url}', timeout=4)"
            test = ["CMD", "python", "-c", code]
        elif lang == "node":
            code = f"fetch('{url}').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
            test = ["CMD", "node", "-e", code]
        else:
            test = ["CMD", "wget", "-q", "-O", "/dev/null", url]
    return {
        "test": test,
        "interval": h.interval,
        "timeout": h.timeout,
        "retries": h.retries,
        "start_period": h.start_period,
    }


class _Route(TypedDict):
    """One ``location`` of the edge, as the nginx template reads it."""

    path: str
    upstream: str
    port: int | None
    zone: str
    rate: str | None
    burst: int
    cache: str | None
    immutable: bool
    max_body: str | None
    timeout: str | None


def _context(
    loaded: LoadedStack, plan: Plan, out_dir: Path, runtime: NginxRuntime, target: str = "compose"
) -> dict[str, Any]:
    stack = loaded.stack
    base = loaded.path.resolve().parent
    alloc = plan.by_name()
    items = workloads(stack)
    by_name = {w.name: w for w in items}
    health = {w.name: _healthcheck(w) for w in items}

    services: list[dict[str, Any]] = []
    volumes: list[str] = []
    for w in items:
        a: Allocation = alloc[w.name]
        svc = w.spec
        entry: dict[str, Any] = {
            "name": w.name,
            "kind": w.kind,
            "image": w.image,
            "build": _rel(base / w.build, out_dir) if w.build else None,
            "alloc": a,
            "read_only": w.read_only,
            "tmpfs": list(w.tmpfs),
            "cap_add": sorted(w.cap_add),
            "healthcheck": health[w.name],
            "port": w.port,
            "volumes": [],
            "environment": {},
            "secrets": [],
            "depends_on": {},
            "command": None,
        }
        if w.kind in ("app", "datastore"):
            assert svc is not None
            entry["networks"] = ["backend"] if w.internal else ["frontend", "backend"]
            for vname, mount in sorted(svc.volumes.items()):
                # '.' cannot occur in a service name, so no two services share a volume.
                volume = f"{w.name}.{vname}"
                volumes.append(volume)
                entry["volumes"].append(f"{volume}:{mount}")
            entry["environment"] = dict(sorted(svc.environment.items()))
            entry["secrets"] = sorted(svc.secrets)
            entry["command"] = svc.command
            entry["depends_on"] = {
                dep: "service_healthy" if health[dep] else "service_started"
                for dep in sorted(svc.depends_on)
            }
        if w.kind == "edge" and not w.build and w.image == DEFAULT_EDGE_IMAGE:
            entry["build"] = _edge_build(out_dir)
        services.append(entry)

    routed = [w for w in items if w.spec is not None and w.spec.routes]
    upstreams = []
    routes: list[_Route] = []
    for w in routed:
        assert w.spec is not None
        servers = list(runtime.upstreams.get(w.name, [f"{w.name}:{w.port}"]))
        upstreams.append({"name": w.name, "servers": servers, "keepalive": 64 * w.replicas})
        for i, r in enumerate(w.spec.routes):
            rate_per_s = None
            if r.rate_limit:
                n, unit = r.rate_limit.split("r/")
                rate_per_s = int(n) if unit == "s" else int(n) / 60
            routes.append(
                {
                    "path": r.path,
                    "upstream": w.name,
                    "port": w.port,
                    "zone": f"{w.name}_{i}",
                    "rate": r.rate_limit,
                    "burst": r.burst if r.burst is not None else max(1, int((rate_per_s or 0) * 2)),
                    "cache": r.cache,
                    "immutable": r.immutable,
                    "max_body": _compose_mem(r.max_body).lower().rstrip("b")
                    if r.max_body
                    else None,
                    "timeout": r.timeout,
                }
            )
    routes.sort(key=lambda r: r["path"])
    edge_deps = sorted({w.name for w in routed})

    headers = {
        "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    # A stack header replaces a default of the same name, whatever its case.
    for name, value in stack.edge.headers.items():
        for default in [d for d in headers if d.lower() == name.lower()]:
            del headers[default]
        headers[name] = value

    scrape = [
        {"job": w.name, "name": w.name, "port": w.port, "path": w.spec.metrics}
        for w in items
        if w.spec is not None and w.spec.metrics
    ]
    secrets = {
        name: _rel(base / s.file, out_dir) if not s.file.startswith("/") else s.file
        for name, s in sorted(stack.secrets.items())
    }
    mon = stack.monitoring
    return {
        "stack": stack,
        "project": stack.project,
        "source": loaded.path.name,
        "services": services,
        "by_name": by_name,
        "volumes": sorted(set(volumes)),
        "secrets": secrets,
        "tls": stack.tls,
        "edge": stack.edge,
        "edge_deps": edge_deps,
        "monitoring": mon,
        "prometheus_enabled": mon.prometheus.enabled,
        "node_exporter_enabled": mon.node_exporter.enabled,
        "cadvisor_enabled": mon.cadvisor.enabled,
        "scrape": scrape,
        # Swarm answers `tasks.<service>` with every task's address (the plain name
        # is the service's one virtual IP); compose answers the plain name so.
        "sd_prefix": "tasks." if target == "swarm" else "",
        "swarm_dns": target == "swarm",
        "upstreams": upstreams,
        "pinned": None,
        "routes": routes,
        "headers": headers,
        "rt": runtime,
        "domain": stack.domain,
        "has_root_route": any(r["path"] == "/" for r in routes),
        "public_https_port": runtime.https_port or stack.edge.https_port,
        "scrape_interval": mon.scrape_interval,
        "scrape_timeout": f"{max(1, int(duration_seconds(mon.scrape_interval) * 800))}ms",
        "client_max_body": _compose_mem(stack.edge.client_max_body).lower().rstrip("b"),
    }


def render_files(
    loaded: LoadedStack,
    plan: Plan,
    out_dir: Path,
    runtime: NginxRuntime | None = None,
    target: str = "compose",
) -> dict[str, str]:
    """Render every output file for ``plan``; paths inside are relative to ``out_dir``.
    ``target="swarm"`` renders the files the stack file's configs carry (no
    docker-compose.yml; Prometheus finds each task by ``tasks.<service>``)."""
    env = _env()
    ctx = _context(loaded, plan, Path(out_dir).resolve(), runtime or NginxRuntime(), target)
    files = {}
    for name in OUTPUTS:
        if name == "docker-compose.yml" and target != "compose":
            continue
        if name == UPSTREAMS_FILE and target == "swarm":  # nginx resolves the tasks itself
            continue
        if name.startswith("prometheus/") and not loaded.stack.monitoring.prometheus.enabled:
            continue
        template = "ffdhe2048.pem" if name.endswith(".pem") else name.replace("/", "_") + ".j2"
        if name.endswith(".pem"):
            files[name] = (templates_dir() / template).read_text(encoding="utf-8")
        else:
            files[name] = env.get_template(template).render(ctx)
    return files


UPSTREAMS_FILE = "nginx/upstreams.conf"


def render_upstreams(
    loaded: LoadedStack,
    plan: Plan,
    out_dir: Path,
    servers: Mapping[str, Sequence[str]],
    pinned: str,
) -> str:
    """``nginx/upstreams.conf`` with the given services' servers pinned to ``servers``
    (``host:port`` each) and the others as planned; ``pinned`` says why, in a comment."""
    env = _env()
    ctx = _context(loaded, plan, Path(out_dir).resolve(), NginxRuntime(upstreams=servers))
    ctx["pinned"] = pinned
    text: str = env.get_template("nginx_upstreams.conf.j2").render(ctx)
    return text


__all__ = [
    "OUTPUTS",
    "UPSTREAMS_FILE",
    "NginxRuntime",
    "Quoted",
    "edge_context",
    "format_bytes",
    "render_files",
    "render_upstreams",
    "templates_dir",
]
