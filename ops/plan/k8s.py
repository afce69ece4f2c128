"""Render Kubernetes manifests from the same stack and capacity plan as the compose files.

``render_k8s(loaded, plan)`` returns ``k8s/...`` path -> YAML text: one
multi-document file per stack service, ``k8s/ingress.yaml``,
``k8s/networkpolicies.yaml``, ``k8s/namespace.yaml`` and a
``k8s/kustomization.yaml`` that lists them (``kubectl apply -k k8s/``). Every
object is built as a Python dict and written by PyYAML's safe dumper, so no
value from the stack is ever spliced into YAML text; the only stack values in
comments are names and paths the stack validator restricts to ``[A-Za-z0-9._/@+-]``.

What maps to what, and the choices made where the two models differ:

* Only the stack's ``services:`` are rendered. The edge is replaced by the
  cluster's ingress-nginx controller (``ingress.yaml`` carries its routes), and
  Prometheus, node-exporter and cAdvisor are the cluster's own monitoring:
  services with ``metrics:`` get ``prometheus.io/scrape|port|path`` pod
  annotations for it to find them.
* A service with ``volumes:`` is a StatefulSet with one PersistentVolumeClaim
  template per volume (``ReadWriteOnce``, ``DEFAULT_VOLUME_SIZE``: the stack has
  no size field, and the cluster's default StorageClass), plus a headless
  Service as its ``serviceName``. A volume is state: a StatefulSet gives each
  replica its own claim that follows it across reschedules, where a Deployment
  sharing one ReadWriteOnce claim could not even roll. Every other service is a
  Deployment (RollingUpdate, maxUnavailable 0, maxSurge 1). Each service with a
  port also gets a ClusterIP Service named after it, so the URLs in the
  stack's environment (``redis://redis:6379``) resolve as they do under compose.
* ``health:`` becomes readiness, liveness and startup probes (httpGet on the
  service port for a path, exec for a command). Kompose maps a compose
  healthcheck to a liveness probe only; a liveness probe alone restarts a
  container that is merely slow to start and never takes an unready replica
  out of its Service. Readiness uses the stack's interval, timeout and retries;
  liveness probes half as often (restart is the heavier remedy); the startup
  probe checks every ``min(interval, 5s)`` for as long as compose would wait
  (``start_period + retries x interval``) before liveness takes over.
* Resources: requests are the plan's reservations, limits its limits, per
  replica. The plan's pids limit has no per-container field in Kubernetes
  (it is the kubelet's ``podPidsLimit``) and is not carried.
* Security: non-root (``runAsUser``/``runAsGroup`` where this project knows the
  image's user, see ``_IMAGE_USERS``; any other image must declare a numeric
  non-root USER or the kubelet refuses it), RuntimeDefault seccomp, no
  privilege escalation, all capabilities dropped. Only a service's explicit
  ``cap_add`` is added back: the datastore default capabilities exist for
  images that start as root and drop to their user, which ``runAsNonRoot``
  rules out. The root filesystem is read-only where the stack's ``read_only``
  says so (every bundled service); each ``tmpfs`` path (``/tmp`` always) is an
  emptyDir. No service account token is mounted and no service-link
  environment variables are injected. ``$`` in environment values and
  ``command`` arguments is doubled, so the kubelet's ``$(NAME)`` expansion
  leaves the stack's text as written.
* Secrets are referenced, never inlined: a stack secret ``x`` is the key ``x``
  of the Secret ``<project>-x`` (``_`` becomes ``-`` in the object name),
  projected to ``/run/secrets/x`` as compose mounts it; the TLS certificate is
  the ``kubernetes.io/tls`` Secret ``<project>-tls``. The operator creates
  them (``kustomization.yaml`` lists each with the command), and
  ``ops.plan.k8s_check`` reads that list.
* A PodDisruptionBudget (maxUnavailable 1) for every service with more than
  one replica. A HorizontalPodAutoscaler (70% CPU) for every Deployment whose
  stack entry sets ``resources.cpu.max``: the stack has no replica maximum, so
  a CPU ceiling is the signal that the service is meant to grow, from the
  planned replicas up to ``2 x replicas``. StatefulSets are never autoscaled:
  another replica of a datastore is another empty volume, not more capacity.
  The plan fitted one VM; the cluster must have room for the HPA maximum.
  The Deployment still states the planned replicas, so ``kubectl apply`` sets
  it back to the HPA minimum, from where the HPA scales it again.
* NetworkPolicies deny all ingress to the project's pods, then allow each
  service from the services that ``depends_on`` it and, for services with
  routes, from the ``ingress-nginx`` namespace, on the service's port. Egress
  is not restricted; a cluster Prometheus needs its own allow policy.
* One Ingress per route, since ingress-nginx settings are per Ingress
  annotations: rate limit, burst (as a multiplier of the rate), body size and
  timeouts as the edge sets them. Route ``cache``/``immutable`` are not
  carried: ingress-nginx has no per-Ingress proxy-cache annotation, and
  configuration snippets are off by default in ingress-nginx (they let an
  Ingress author inject controller configuration), so none are used. The
  edge's response headers and HSTS are controller-wide ingress-nginx settings
  (its ConfigMap's ``add-headers`` and ``hsts*`` keys), not Ingress fields.

Names must be valid Kubernetes names: the stack allows ``_`` and a trailing
``-`` in names, which a Service or StatefulSet name cannot hold, so such a
service is refused with a ``RenderError`` rather than renamed (its name is its
host name in other services' environment).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import yaml

from ops.errors import RenderError
from ops.plan.capacity import Allocation, Plan
from ops.stack import LoadedStack, Route, Service, Workload, duration_seconds, workloads

K8S_DIR = "k8s"
KUSTOMIZATION = f"{K8S_DIR}/kustomization.yaml"
INGRESS_FILE = f"{K8S_DIR}/ingress.yaml"
NETWORKPOLICIES_FILE = f"{K8S_DIR}/networkpolicies.yaml"
NAMESPACE_FILE = f"{K8S_DIR}/namespace.yaml"
MANAGED_BY = "vots-ops"
#: Claim size of each stack volume: the stack has no size field.
DEFAULT_VOLUME_SIZE = "10Gi"
#: Where ingress-nginx runs; its namespace is the one allowed to reach routed services.
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"
HPA_CPU_UTILIZATION = 70
#: The edge's proxy timeouts (templates/nginx_nginx.conf.j2), in seconds.
EDGE_READ_TIMEOUT_S = 60
EDGE_SEND_TIMEOUT_S = 60
EDGE_CONNECT_TIMEOUT_S = 5
#: The startup probe's longest period: a fast start is seen within this.
STARTUP_PERIOD_S = 5
TERMINATION_GRACE_S = {"app": 30, "datastore": 60}
#: Written in kustomization.yaml before each Secret the operator creates;
#: ``ops.plan.k8s_check.external_secrets`` reads these lines.
EXTERNAL_SECRET_MARK = "#   secret/"

# (uid, gid) the images of this project run as: services/*/Dockerfile, and the
# official Redis images (Alpine: uid 999, gid 1000; Debian: 999/999).
_IMAGE_USERS: dict[str, tuple[int, int]] = {
    "vots/agent": (10003, 10003),
    "vots/rag": (10001, 10001),
    "vots/chroma": (10002, 10002),
}
# Ports of images the stack may name without ``port:`` (compose reaches a
# container on any port; a Kubernetes Service needs the number).
_IMAGE_PORTS: dict[str, int] = {"redis": 6379}

_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A StatefulSet's pods carry controller-revision-hash=<name>-<10 chars>, a label
# value of at most 63 characters; "<name>-headless" is a Service name (63).
MAX_SERVICE_NAME = 52
_PORT_NAME_HTTP = "http"
_PORT_NAME_TCP = "tcp"
_ANN = "nginx.ingress.kubernetes.io/"


def header(source: str) -> str:
    """The first line of every file ``render_k8s`` returns."""
    return f"# Generated by `vots-ops plan` from {source}; do not edit by hand.\n"


# --------------------------------------------------------------------------- names


def _label(value: str, what: str, max_len: int = 63) -> str:
    if len(value) > max_len or not _LABEL_RE.fullmatch(value):
        raise RenderError(
            f"{what} {value!r} is not a valid Kubernetes name: lowercase letters, digits "
            f"and '-', starting with a letter, ending with a letter or digit, at most "
            f"{max_len} characters"
        )
    return value


def _named(
    loaded: LoadedStack, value: str, what: str, loc: tuple[str, ...], max_len: int = 63
) -> str:
    """``_label``, refused as bad input at the stack's line and key (exit 2)."""
    try:
        return _label(value, what, max_len)
    except RenderError as exc:
        raise loaded.error(f"{exc} (--target k8s)", loc) from None


def _object_name(value: str, what: str, max_len: int = 63) -> str:
    """A stack name as a Kubernetes object name: ``_`` becomes ``-``."""
    return _label(value.replace("_", "-"), what, max_len)


def _repository(image: str) -> tuple[str, str]:
    """``(repository, tag)`` of an image reference, Docker Hub's prefixes removed."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    tag = ""
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
            break
    return ref, tag


def image_user(image: str) -> tuple[int, int] | None:
    """The (uid, gid) an image this project knows runs as, else None."""
    repo, tag = _repository(image)
    if repo == "redis":
        return (999, 1000) if "alpine" in tag else (999, 999)
    return _IMAGE_USERS.get(repo)


def service_port(w: Workload) -> int | None:
    """The port other services reach ``w`` on: the stack's, else a known image's."""
    if w.port is not None:
        return w.port
    if w.image is None:
        return None
    return _IMAGE_PORTS.get(_repository(w.image)[0])


# --------------------------------------------------------------------------- quantities


def cpu_quantity(millicores: int) -> str:
    return f"{millicores}m"


def memory_quantity(n: int) -> str:
    """Bytes as an exact Kubernetes quantity, in the largest whole binary unit."""
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _nginx_size(n: int) -> str:
    """Bytes as nginx writes a size (``2m``, ``512k``, ``1g``), exact."""
    for unit, size in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _literal(text: str) -> str:
    """A value the kubelet passes on unchanged: it expands ``$(NAME)`` in env values
    and args and reads ``$$`` as ``$``, so every ``$`` is doubled (compose's
    interpolation gets the same treatment in ops.plan.render)."""
    return text.replace("$", "$$")


def _seconds(duration: str) -> int:
    """A stack duration as whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(duration_seconds(duration)))


# --------------------------------------------------------------------------- objects


def _meta(name: str, namespace: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    meta.update(extra)
    return meta


class _Ctx:
    """What every object of one render shares."""

    def __init__(self, loaded: LoadedStack, plan: Plan) -> None:
        stack = loaded.stack
        self.stack = stack
        self.source = loaded.path.name
        self.project = _named(loaded, stack.project, "the project name", ("project",))
        self.namespace = self.project
        self.alloc = plan.by_name()
        self.items = [w for w in workloads(stack) if w.kind in ("app", "datastore")]
        self.by_name = {w.name: w for w in self.items}
        for w in self.items:
            _named(loaded, w.name, "the service name", ("services", w.name), MAX_SERVICE_NAME)
            if w.name not in self.alloc:
                raise RenderError(f"the plan has no allocation for services.{w.name}")
        self.tls_secret = f"{self.project}-tls"
        self.secret_names: dict[str, str] = {}
        for name in sorted(stack.secrets):
            obj = _object_name(f"{self.project}-{name}", f"secret {name!r} as a Secret name", 253)
            if obj in self.secret_names.values() or obj == self.tls_secret:
                raise RenderError(
                    f"secret {name!r} would be the Secret {obj}, which another name "
                    "already gives; rename one of them"
                )
            self.secret_names[name] = obj
        self.dependants: dict[str, list[str]] = {w.name: [] for w in self.items}
        for w in self.items:
            assert w.spec is not None
            for dep in w.spec.depends_on:
                self.dependants[dep].append(w.name)
        for deps in self.dependants.values():
            deps.sort()

    def labels(self, name: str, component: str | None = None) -> dict[str, str]:
        out = {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": self.project,
            "app.kubernetes.io/managed-by": MANAGED_BY,
        }
        if component is not None:
            out["app.kubernetes.io/component"] = component
        return out

    def selector(self, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": self.project}

    def project_selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": self.project}


def _port_name(svc: Service) -> str:
    http = bool(svc.routes or svc.metrics or (svc.health and svc.health.path))
    return _PORT_NAME_HTTP if http else _PORT_NAME_TCP


def _probes(w: Workload, svc: Service) -> dict[str, Any]:
    h = svc.health
    if h is None:
        return {}
    if h.command is not None:
        action: dict[str, Any] = {"exec": {"command": list(h.command)}}
    else:
        action = {"httpGet": {"path": h.path, "port": _PORT_NAME_HTTP}}
    interval, timeout = _seconds(h.interval), _seconds(h.timeout)
    startup_period = min(interval, STARTUP_PERIOD_S)
    budget = duration_seconds(h.start_period) + h.retries * interval
    return {
        "startupProbe": {
            **action,
            "periodSeconds": startup_period,
            "timeoutSeconds": timeout,
            "failureThreshold": max(1, math.ceil(budget / startup_period)),
        },
        "readinessProbe": {
            **action,
            "periodSeconds": interval,
            "timeoutSeconds": timeout,
            "successThreshold": 1,
            "failureThreshold": h.retries,
        },
        "livenessProbe": {
            **action,
            "periodSeconds": interval * 2,
            "timeoutSeconds": timeout,
            "failureThreshold": h.retries,
        },
    }


def _pod_template(ctx: _Ctx, w: Workload, a: Allocation, stateful: bool) -> dict[str, Any]:
    svc = w.spec
    assert svc is not None
    if w.image is None:
        raise RenderError(
            f"services.{w.name} has no image; a cluster pulls its images, so give "
            "'image:' (and push what 'build:' makes to it)"
        )
    user = image_user(w.image)
    port = service_port(w)
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    seen_paths: set[str] = set()

    def mount(path: str, entry: dict[str, Any]) -> None:
        if path in seen_paths:
            raise RenderError(f"services.{w.name} mounts two things at {path}")
        if any(m["name"] == entry["name"] for m in mounts):
            raise RenderError(
                f"services.{w.name} has two volumes named {entry['name']} "
                "('_' and '-' are the same in Kubernetes names)"
            )
        seen_paths.add(path)
        mounts.append(entry)

    for vname, path in sorted(svc.volumes.items()):
        claim = _object_name(f"vol-{vname}", f"volume {vname!r} of services.{w.name}")
        mount(path, {"name": claim, "mountPath": path})
    for i, path in enumerate(w.tmpfs):
        volumes.append({"name": f"tmp-{i}", "emptyDir": {}})
        mount(path, {"name": f"tmp-{i}", "mountPath": path})
    fs_group = user[1] if user is not None and (svc.volumes or svc.secrets) else None
    if svc.secrets:
        sources = [
            {
                "secret": {
                    "name": ctx.secret_names[name],
                    "items": [{"key": name, "path": name}],
                }
            }
            for name in sorted(svc.secrets)
        ]
        volumes.append(
            {
                "name": "secrets",
                # Readable by the service's group (fsGroup) where the user is known.
                "projected": {
                    "defaultMode": 0o440 if fs_group is not None else 0o444,
                    "sources": sources,
                },
            }
        )
        mount("/run/secrets", {"name": "secrets", "mountPath": "/run/secrets", "readOnly": True})

    caps: dict[str, Any] = {"drop": ["ALL"]}
    if svc.cap_add:
        caps["add"] = sorted(dict.fromkeys(svc.cap_add))
    csc: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": w.read_only,
        "runAsNonRoot": True,
        "capabilities": caps,
    }
    psc: dict[str, Any] = {"runAsNonRoot": True}
    if user is not None:
        csc["runAsUser"], csc["runAsGroup"] = user
        psc["runAsUser"], psc["runAsGroup"] = user
    if fs_group is not None:
        psc["fsGroup"] = fs_group
        psc["fsGroupChangePolicy"] = "OnRootMismatch"
    psc["seccompProfile"] = {"type": "RuntimeDefault"}

    container: dict[str, Any] = {
        "name": w.name,
        "image": w.image,
        "imagePullPolicy": "IfNotPresent",
    }
    if svc.command is not None:
        # compose's command replaces the image's CMD and keeps its ENTRYPOINT: args.
        container["args"] = [_literal(a) for a in svc.command]
    if port is not None:
        container["ports"] = [{"name": _port_name(svc), "containerPort": port, "protocol": "TCP"}]
    if svc.environment:
        container["env"] = [
            {"name": k, "value": _literal(v)} for k, v in sorted(svc.environment.items())
        ]
    container["resources"] = {
        "requests": {
            "cpu": cpu_quantity(a.cpu_reservation),
            "memory": memory_quantity(a.mem_reservation),
        },
        "limits": {"cpu": cpu_quantity(a.cpu_limit), "memory": memory_quantity(a.mem_limit)},
    }
    container.update(_probes(w, svc))
    container["securityContext"] = csc
    if mounts:
        container["volumeMounts"] = mounts

    annotations: dict[str, str] = {}
    if svc.metrics and port is not None:
        annotations = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": svc.metrics,
        }
    meta: dict[str, Any] = {"labels": ctx.labels(w.name, w.kind)}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S["datastore" if stateful else "app"],
        "securityContext": psc,
        "containers": [container],
    }
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": meta, "spec": spec}


def _workload_objects(ctx: _Ctx, w: Workload) -> list[dict[str, Any]]:
    svc = w.spec
    assert svc is not None
    a = ctx.alloc[w.name]
    ns = ctx.namespace
    labels = ctx.labels(w.name, w.kind)
    stateful = bool(svc.volumes)
    port = service_port(w)
    port_name = _port_name(svc)
    template = _pod_template(ctx, w, a, stateful)
    objects: list[dict[str, Any]] = []
    headless = f"{w.name}-headless"

    if stateful:
        claims = [
            {
                "metadata": {
                    "name": _object_name(f"vol-{vname}", f"volume {vname!r}"),
                    "labels": ctx.labels(w.name, w.kind),
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": DEFAULT_VOLUME_SIZE}},
                },
            }
            for vname in sorted(svc.volumes)
        ]
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _meta(w.name, ns, labels),
                "spec": {
                    "serviceName": headless,
                    "replicas": a.replicas,
                    "selector": {"matchLabels": ctx.selector(w.name)},
                    "podManagementPolicy": "OrderedReady",
                    "updateStrategy": {"type": "RollingUpdate"},
                    "template": template,
                    "volumeClaimTemplates": claims,
                },
            }
        )
    else:
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(w.name, ns, labels),
                "spec": {
                    "replicas": a.replicas,
                    "selector": {"matchLabels": ctx.selector(w.name)},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
                    },
                    "template": template,
                },
            }
        )

    service_ports = (
        [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}]
        if port is not None
        else []
    )
    if port is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(w.name, ns, labels),
                "spec": {
                    "type": "ClusterIP",
                    "selector": ctx.selector(w.name),
                    "ports": service_ports,
                },
            }
        )
    if stateful:
        spec: dict[str, Any] = {
            "clusterIP": "None",
            "selector": ctx.selector(w.name),
            # Peers find each other before they are ready (a datastore's own replication).
            "publishNotReadyAddresses": True,
        }
        if service_ports:
            spec["ports"] = service_ports
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(headless, ns, labels),
                "spec": spec,
            }
        )
    if a.replicas > 1:
        objects.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _meta(w.name, ns, labels),
                "spec": {
                    "maxUnavailable": 1,
                    "selector": {"matchLabels": ctx.selector(w.name)},
                },
            }
        )
    if not stateful and svc.resources.cpu.max is not None:
        objects.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": _meta(w.name, ns, labels),
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": w.name,
                    },
                    "minReplicas": a.replicas,
                    "maxReplicas": 2 * a.replicas,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {
                                    "type": "Utilization",
                                    "averageUtilization": HPA_CPU_UTILIZATION,
                                },
                            },
                        }
                    ],
                },
            }
        )
    return objects


def _route_annotations(ctx: _Ctx, route: Route) -> dict[str, str]:
    ann: dict[str, str] = {_ANN + "ssl-redirect": "true"}
    if route.rate_limit:
        n_text, unit = route.rate_limit.split("r/")
        n = int(n_text)
        per_s = n if unit == "s" else n / 60
        # The edge's default burst when the route gives none (ops.plan.render).
        burst = route.burst if route.burst is not None else max(1, int(per_s * 2))
        ann[_ANN + ("limit-rps" if unit == "s" else "limit-rpm")] = str(n)
        # ingress-nginx sets burst = rate x multiplier, so only whole multiples
        # of the rate are expressible (rounded down, at least 1).
        ann[_ANN + "limit-burst-multiplier"] = str(max(1, burst // n))
    body = route.max_body if route.max_body is not None else ctx.stack.edge.client_max_body
    ann[_ANN + "proxy-body-size"] = _nginx_size(body)
    read = _seconds(route.timeout) if route.timeout else EDGE_READ_TIMEOUT_S
    ann[_ANN + "proxy-connect-timeout"] = str(EDGE_CONNECT_TIMEOUT_S)
    ann[_ANN + "proxy-read-timeout"] = str(read)
    ann[_ANN + "proxy-send-timeout"] = str(EDGE_SEND_TIMEOUT_S)
    return ann


# ingress-nginx validates Prefix paths strictly (strict-validate-path-type); a
# path with other characters is given as ImplementationSpecific, which it also
# matches as a prefix.
_PREFIX_PATH_RE = re.compile(r"^/[A-Za-z0-9/_-]*$")


def _ingresses(ctx: _Ctx) -> tuple[list[dict[str, Any]], list[str]]:
    objects: list[dict[str, Any]] = []
    not_carried: list[str] = []
    routed = [w for w in ctx.items if w.spec is not None and w.spec.routes]
    for w in routed:
        assert w.spec is not None
        port = service_port(w)
        assert port is not None  # the stack requires a port for routes
        for i, route in enumerate(w.spec.routes):
            if route.cache:
                not_carried.append(f"{route.path} (microcache {route.cache})")
            if route.immutable:
                not_carried.append(f"{route.path} (immutable caching)")
            path_type = (
                "Prefix" if _PREFIX_PATH_RE.fullmatch(route.path) else "ImplementationSpecific"
            )
            objects.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "Ingress",
                    "metadata": _meta(
                        f"{w.name}-{i}",
                        ctx.namespace,
                        ctx.labels(w.name, w.kind),
                        annotations=_route_annotations(ctx, route),
                    ),
                    "spec": {
                        "ingressClassName": INGRESS_CLASS,
                        "tls": [{"hosts": [ctx.stack.domain], "secretName": ctx.tls_secret}],
                        "rules": [
                            {
                                "host": ctx.stack.domain,
                                "http": {
                                    "paths": [
                                        {
                                            "path": route.path,
                                            "pathType": path_type,
                                            "backend": {
                                                "service": {
                                                    "name": w.name,
                                                    "port": {"number": port},
                                                }
                                            },
                                        }
                                    ]
                                },
                            }
                        ],
                    },
                }
            )
    objects.sort(key=lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["path"])
    return objects, sorted(not_carried)


def _network_policies(ctx: _Ctx) -> list[dict[str, Any]]:
    labels = ctx.labels(ctx.project)
    labels["app.kubernetes.io/component"] = "network-policy"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("default-deny-ingress", ctx.namespace, labels),
            "spec": {
                "podSelector": {"matchLabels": ctx.project_selector()},
                "policyTypes": ["Ingress"],
            },
        }
    ]
    for w in ctx.items:
        assert w.spec is not None
        peers: list[dict[str, Any]] = [
            {"podSelector": {"matchLabels": ctx.selector(dep)}} for dep in ctx.dependants[w.name]
        ]
        if w.spec.routes:
            peers.append(
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}
                    }
                }
            )
        if not peers:
            continue
        rule: dict[str, Any] = {"from": peers}
        port = service_port(w)
        if port is not None:
            rule["ports"] = [{"protocol": "TCP", "port": port}]
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(f"allow-{w.name}", ctx.namespace, ctx.labels(w.name, w.kind)),
                "spec": {
                    "podSelector": {"matchLabels": ctx.selector(w.name)},
                    "policyTypes": ["Ingress"],
                    "ingress": [rule],
                },
            }
        )
    return objects


def _namespace(ctx: _Ctx) -> dict[str, Any]:
    # Pod Security "restricted" admits only NET_BIND_SERVICE as an added capability.
    adds = {c for w in ctx.items if w.spec is not None for c in w.spec.cap_add}
    level = "restricted" if adds <= {"NET_BIND_SERVICE"} else "baseline"
    labels = ctx.labels(ctx.project)
    labels.update(
        {
            "pod-security.kubernetes.io/enforce": level,
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ctx.namespace, "labels": labels},
    }


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, without anchors: each object reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(docs: list[dict[str, Any]], *, many: bool) -> str:
    text: str = yaml.dump_all(
        docs,
        Dumper=_Dumper,
        sort_keys=False,
        explicit_start=many,
        width=1_000_000,
        allow_unicode=False,
    )
    return text


def _dump(source: str, docs: Iterable[dict[str, Any]], comments: Iterable[str] = ()) -> str:
    text = header(source)
    for line in comments:
        text += f"# {line}".rstrip() + "\n"
    return text + _yaml(list(docs), many=True)


def _check_unique(files: dict[str, list[dict[str, Any]]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for path, docs in files.items():
        for doc in docs:
            key = (doc["kind"], doc["metadata"]["name"])
            if key in seen:
                raise RenderError(
                    f"{key[0]} {key[1]} would be rendered twice ({seen[key]} and {path}); "
                    "rename one of the services"
                )
            seen[key] = path


def render_k8s(loaded: LoadedStack, plan: Plan) -> dict[str, str]:
    """``k8s/<file>`` -> YAML text for the stack's services; see the module docstring."""
    ctx = _Ctx(loaded, plan)
    docs: dict[str, list[dict[str, Any]]] = {}
    for w in ctx.items:
        docs[f"{K8S_DIR}/{w.name}.yaml"] = _workload_objects(ctx, w)
    ingresses, not_carried = _ingresses(ctx)
    reserved = {INGRESS_FILE, NETWORKPOLICIES_FILE, NAMESPACE_FILE, KUSTOMIZATION}
    clash = reserved.intersection(docs)
    if clash:
        raise RenderError(f"a service's file would be {sorted(clash)[0]}; rename the service")
    docs[INGRESS_FILE] = ingresses
    docs[NETWORKPOLICIES_FILE] = _network_policies(ctx)
    docs[NAMESPACE_FILE] = [_namespace(ctx)]
    _check_unique(docs)

    src = ctx.source
    comments: dict[str, list[str]] = {
        INGRESS_FILE: [
            "One Ingress per route: ingress-nginx takes rate limits, body sizes and",
            "timeouts as per-Ingress annotations. Response headers and HSTS are the",
            "controller's ConfigMap settings (add-headers, hsts, hsts-max-age,",
            "hsts-include-subdomains). No configuration snippets are used (ingress-nginx",
            "disables them by default).",
            *(
                ["Not carried (ingress-nginx has no per-Ingress proxy cache):"]
                + [f"  {item}" for item in not_carried]
                if not_carried
                else []
            ),
        ],
        NETWORKPOLICIES_FILE: [
            "Ingress to the project's pods is denied unless allowed below; egress is open.",
            "A cluster Prometheus scraping the pods needs an allow policy of its own.",
        ],
    }
    out: dict[str, str] = {}
    for path, objects in docs.items():
        out[path] = _dump(src, objects, comments.get(path, ()))

    out[KUSTOMIZATION] = _kustomization(ctx, sorted(out))
    return dict(sorted(out.items()))


def _external_secrets(ctx: _Ctx) -> list[tuple[str, str]]:
    """(Secret name, the command that creates it) for every Secret the manifests reference."""
    stack, ns = ctx.stack, ctx.namespace
    out = [
        (
            ctx.tls_secret,
            f"kubectl -n {ns} create secret tls {ctx.tls_secret} "
            f"--cert={stack.tls.certificate} --key={stack.tls.key}",
        )
    ]
    for name, obj in ctx.secret_names.items():
        out.append(
            (
                obj,
                f"kubectl -n {ns} create secret generic {obj} "
                f"--from-file={name}={stack.secrets[name].file}",
            )
        )
    return sorted(out)


def k8s_notes(loaded: LoadedStack, plan: Plan) -> tuple[str, ...]:
    """What ``--target k8s`` cannot carry as planned, one line each (the CLI's warnings)."""
    ctx = _Ctx(loaded, plan)
    notes = [
        "the edge becomes ingress-nginx Ingresses, and Prometheus, node-exporter and cAdvisor "
        "are left to the cluster's own monitoring: none of them is rendered",
        "pids limits are not carried: Kubernetes has no per-container pids limit (it is the "
        "kubelet's podPidsLimit)",
        "the edge's response headers (Content-Security-Policy, HSTS and the rest) are "
        "ingress-nginx controller settings (its ConfigMap's add-headers and hsts keys), "
        "not rendered",
    ]
    for w in ctx.items:
        assert w.spec is not None
        if w.image and image_user(w.image) is None:
            notes.append(
                f"{w.name}: the user of {w.image} is not known here; runAsNonRoot needs the "
                "image to declare a numeric non-root USER, or the kubelet refuses to start it"
            )
        for route in w.spec.routes:
            if route.cache:
                notes.append(f"{route.path}: the microcache ({route.cache}) is not carried")
            if route.immutable:
                notes.append(f"{route.path}: immutable caching is not carried")
            if route.rate_limit:
                n_text, unit = route.rate_limit.split("r/")
                n = int(n_text)
                per_s = n if unit == "s" else n / 60
                burst = route.burst if route.burst is not None else max(1, int(per_s * 2))
                got = n * max(1, burst // n)
                if got != burst:
                    notes.append(
                        f"{route.path}: burst {burst} at {route.rate_limit} becomes {got}: "
                        "ingress-nginx takes the burst as a whole multiple of the rate"
                    )
    return tuple(notes)


def _kustomization(ctx: _Ctx, files: list[str]) -> str:
    resources = [path.removeprefix(f"{K8S_DIR}/") for path in files if path != KUSTOMIZATION]
    comments = [
        "Apply with `kubectl apply -k k8s/`. Secrets these files reference but do not",
        "contain (values never go into these files): create each after `kubectl apply -f",
        "k8s/namespace.yaml` and before the rest, from the stack file's directory:",
    ]
    comments += [f"{EXTERNAL_SECRET_MARK[2:]}{name}: {cmd}" for name, cmd in _external_secrets(ctx)]
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": ctx.namespace,
        # labels, not commonLabels: commonLabels would also rewrite the (immutable)
        # selectors. Every object already carries these; this keeps additions honest.
        "labels": [
            {
                "pairs": {
                    "app.kubernetes.io/part-of": ctx.project,
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                },
                "includeSelectors": False,
            }
        ],
        "resources": resources,
    }
    text = header(ctx.source)
    for line in comments:
        text += f"# {line}\n"
    return text + _yaml([doc], many=False)


__all__ = [
    "DEFAULT_VOLUME_SIZE",
    "EXTERNAL_SECRET_MARK",
    "INGRESS_FILE",
    "KUSTOMIZATION",
    "NETWORKPOLICIES_FILE",
    "cpu_quantity",
    "header",
    "image_user",
    "k8s_notes",
    "memory_quantity",
    "render_k8s",
    "service_port",
]
