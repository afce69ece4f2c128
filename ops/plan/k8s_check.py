"""Check rendered Kubernetes manifests without a cluster.

* ``validate_schemas``: every object against the Kubernetes OpenAPI schemas
  that the ``kubernetes-validate`` package bundles (the ``verify`` extra), in
  strict mode (an unknown field is an error), for each Kubernetes version
  asked for. An object of a kind or apiVersion that version does not know
  (``extensions/v1beta1`` Ingress) is an error, not the package's warning: the
  API server would refuse it. ``kustomization.yaml`` is not an API object; it
  is checked on its own (it must list exactly the other rendered files).
* ``cross_check``: what a schema cannot see, the references between objects:
  Service selectors, ports and probe ports, PDB and HPA targets, Secrets and
  ConfigMaps, Ingress backends and NetworkPolicy selectors.
* ``verify_k8s``: both, as ``CheckResult`` lines like ``plan --verify`` prints.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from ops.plan.k8s import EXTERNAL_SECRET_MARK, K8S_DIR, KUSTOMIZATION
from ops.plan.verify import CheckResult

VERSIONS = ("1.33.0", "1.37.0")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
_EXTERNAL_RE = re.compile(r"^" + re.escape(EXTERNAL_SECRET_MARK) + r"([a-z0-9][a-z0-9.-]*):")


@dataclass(frozen=True)
class Doc:
    """One YAML document of a rendered file."""

    path: str
    index: int
    body: Any

    @property
    def where(self) -> str:
        return f"{self.path}#{self.index}"

    @property
    def ident(self) -> str:
        if not isinstance(self.body, dict):
            return self.where
        meta = self.body.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        return f"{self.where} {self.body.get('kind')}/{name}"


def _value(loader: Any, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(node.value)


def _safe_loader() -> Any:
    """A safe loader (libyaml's where PyYAML has it) that reads YAML 1.1's ``=``
    value tag as the plain string it is, where PyYAML's own would refuse it."""
    base = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    loader: Any = type("_Loader", (base,), {})
    loader.add_constructor("tag:yaml.org,2002:value", _value)
    return loader


_Loader = _safe_loader()


def _documents(files: Mapping[str, str]) -> tuple[list[Doc], list[str]]:
    """The objects of every rendered file except kustomization.yaml, and parse problems."""
    docs: list[Doc] = []
    problems: list[str] = []
    for path in sorted(files):
        if path == KUSTOMIZATION:
            continue
        try:
            bodies = list(yaml.load_all(files[path], Loader=_Loader))  # a safe loader
        except yaml.YAMLError as e:
            problems.append(f"{path}: not YAML: {e}")
            continue
        for i, body in enumerate(bodies):
            if body is None:
                continue
            docs.append(Doc(path, i, body))
    return docs, problems


def _objects(docs: Iterable[Doc]) -> tuple[list[Doc], list[str]]:
    ok: list[Doc] = []
    problems: list[str] = []
    for d in docs:
        b = d.body
        if not isinstance(b, dict):
            problems.append(f"{d.where}: not a mapping")
        elif not isinstance(b.get("apiVersion"), str) or not isinstance(b.get("kind"), str):
            problems.append(f"{d.where}: no apiVersion and kind")
        elif not isinstance(b.get("metadata"), dict) or not isinstance(
            b["metadata"].get("name"), str
        ):
            problems.append(f"{d.where}: no metadata.name")
        else:
            ok.append(d)
    return ok, problems


# --------------------------------------------------------------------------- schemas


def _validator() -> Any:
    """kubernetes_validate.utils, imported only when a check runs (the ``verify`` extra)."""
    from ops.extras import require

    require(
        "kubernetes_validate",
        "verify",
        "plan --target k8s --verify",
        package="kubernetes-validate",
    )
    return importlib.import_module("kubernetes_validate.utils")


def _schema_result(
    kv: Any, objects: Sequence[Doc], parse: Sequence[str], version: str
) -> CheckResult:
    lines = list(parse)
    ok = not parse
    for d in objects:
        try:
            used = kv.validate(d.body, version, strict=True)
        except kv.ValidationError as e:
            ok = False
            at = ".".join(str(p) for p in e.path) or "(top)"
            lines.append(f"FAILED {d.ident}: {at}: {e.message}")
        except kv.SchemaNotFoundError as e:
            ok = False
            lines.append(f"FAILED {d.ident}: {e.message}")
        except kv.VersionNotSupportedError as e:
            ok = False
            lines.append(f"FAILED kubernetes-validate has no schemas for Kubernetes {e.version}")
            break
        except Exception as e:  # a schema that fails to load or resolve
            ok = False
            lines.append(f"FAILED {d.ident}: could not be validated: {e}")
        else:
            lines.append(f"OK {d.ident} (schemas {used}, strict)")
    return CheckResult(f"k8s-schema-{version}", ok, "\n".join(lines))


def check_kustomization(files: Mapping[str, str]) -> list[str]:
    """Problems with kustomization.yaml: it must list exactly the other rendered files."""
    text = files.get(KUSTOMIZATION)
    if text is None:
        return [f"{KUSTOMIZATION} is missing"]
    try:
        doc = yaml.load(text, Loader=_Loader)  # a safe loader
    except yaml.YAMLError as e:
        return [f"{KUSTOMIZATION}: not YAML: {e}"]
    if not isinstance(doc, dict):
        return [f"{KUSTOMIZATION}: not a mapping"]
    problems = []
    if (
        doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1"
        or doc.get("kind") != "Kustomization"
    ):
        problems.append(f"{KUSTOMIZATION}: not a kustomize.config.k8s.io/v1beta1 Kustomization")
    if "commonLabels" in doc:
        problems.append(f"{KUSTOMIZATION}: commonLabels would rewrite the workloads' selectors")
    for entry in doc.get("labels") or []:
        if isinstance(entry, dict) and entry.get("includeSelectors"):
            problems.append(f"{KUSTOMIZATION}: labels with includeSelectors rewrite selectors")
    ns = doc.get("namespace")
    if not isinstance(ns, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
        problems.append(f"{KUSTOMIZATION}: namespace {ns!r} is not a valid namespace name")
    base = PurePosixPath(K8S_DIR)
    rendered = sorted(
        str(PurePosixPath(p).relative_to(base))
        for p in files
        if p != KUSTOMIZATION and PurePosixPath(p).parent == base
    )
    outside = sorted(p for p in files if PurePosixPath(p).parent != base)
    for p in outside:
        problems.append(f"{p}: outside {K8S_DIR}/, where kustomization.yaml cannot list it")
    listed = doc.get("resources")
    if not isinstance(listed, list) or not all(isinstance(r, str) for r in listed):
        return [*problems, f"{KUSTOMIZATION}: resources is not a list of file names"]
    for r in sorted(set(listed) - set(rendered)):
        problems.append(f"{KUSTOMIZATION}: lists {r}, which is not rendered")
    for r in sorted(set(rendered) - set(listed)):
        problems.append(f"{KUSTOMIZATION}: does not list {r}")
    if len(listed) != len(set(listed)):
        problems.append(f"{KUSTOMIZATION}: lists a file twice")
    return problems


def validate_schemas(
    files: Mapping[str, str], versions: Sequence[str] = VERSIONS
) -> list[CheckResult]:
    """One result per Kubernetes version (strict schemas), plus one for kustomization.yaml."""
    kv = _validator()
    docs, parse = _documents(files)
    objects, shape = _objects(docs)
    results = [_schema_result(kv, objects, [*parse, *shape], v) for v in versions]
    problems = check_kustomization(files)
    results.append(CheckResult("k8s-kustomization", not problems, "\n".join(problems) or "OK"))
    return results


# --------------------------------------------------------------------------- references


def external_secrets(files: Mapping[str, str]) -> set[str]:
    """The Secrets kustomization.yaml documents as created by the operator."""
    out = set()
    for line in files.get(KUSTOMIZATION, "").splitlines():
        m = _EXTERNAL_RE.match(line)
        if m:
            out.add(m.group(1))
    return out


def _matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a label set."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class _Workload:
    doc: Doc
    kind: str
    name: str
    namespace: str | None
    labels: dict[str, str]
    pod: dict[str, Any]

    def containers(self) -> list[dict[str, Any]]:
        return [
            c
            for key in ("initContainers", "containers")
            for c in _list(self.pod.get(key))
            if isinstance(c, dict)
        ]

    def ports(self) -> set[int | str]:
        """Every containerPort of the pod, by number and by name."""
        return {p for c in self.containers() for p in _container_ports(c)}


def _container_ports(c: dict[str, Any]) -> set[int | str]:
    out: set[int | str] = set()
    for p in _list(c.get("ports")):
        if isinstance(p, dict):
            out.update(v for k, v in p.items() if k in ("containerPort", "name"))
    return out


def _secret_refs(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, name, where) of every Secret and ConfigMap a pod spec requires."""
    refs: list[tuple[str, str, str]] = []

    def add(kind: str, ref: Any, where: str) -> None:
        if isinstance(ref, dict) and not ref.get("optional"):
            name = ref.get("secretName" if kind == "Secret" and "secretName" in ref else "name")
            if isinstance(name, str):
                refs.append((kind, name, where))

    for v in _list(pod.get("volumes")):
        if not isinstance(v, dict):
            continue
        add("Secret", v.get("secret"), f"volume {v.get('name')}")
        add("ConfigMap", v.get("configMap"), f"volume {v.get('name')}")
        for src in _list(_dig(v, "projected", "sources")):
            if isinstance(src, dict):
                add("Secret", src.get("secret"), f"volume {v.get('name')}")
                add("ConfigMap", src.get("configMap"), f"volume {v.get('name')}")
    for s in _list(pod.get("imagePullSecrets")):
        add("Secret", s, "imagePullSecrets")
    for key in ("initContainers", "containers"):
        for c in _list(pod.get(key)):
            if not isinstance(c, dict):
                continue
            cname = c.get("name")
            for e in _list(c.get("envFrom")):
                if isinstance(e, dict):
                    add("Secret", e.get("secretRef"), f"container {cname} envFrom")
                    add("ConfigMap", e.get("configMapRef"), f"container {cname} envFrom")
            for e in _list(c.get("env")):
                vf = e.get("valueFrom") if isinstance(e, dict) else None
                if isinstance(vf, dict):
                    where = f"container {cname} env {e.get('name')}"
                    add("Secret", vf.get("secretKeyRef"), where)
                    add("ConfigMap", vf.get("configMapKeyRef"), where)
    return refs


def cross_check(files: Mapping[str, str]) -> list[str]:
    """Problems with the references between rendered objects; empty when all hold."""
    docs, problems = _documents(files)
    objects, shape = _objects(docs)
    problems += shape
    external = external_secrets(files)

    seen: dict[tuple[str, str | None, str], str] = {}
    namespaces: set[str | None] = set()
    workloads: list[_Workload] = []
    services: dict[str, dict[str, Any]] = {}
    rendered: set[tuple[str, str]] = set()
    for d in objects:
        b = d.body
        kind, name = b["kind"], b["metadata"]["name"]
        ns = b["metadata"].get("namespace")
        if kind != "Namespace":
            namespaces.add(ns)
        key = (kind, ns, name)
        if key in seen:
            problems.append(f"{d.ident}: also rendered in {seen[key]}")
        seen[key] = d.where
        rendered.add((kind, name))
        if kind in WORKLOAD_KINDS:
            tmpl = _dig(b, "spec", "template")
            labels = _dig(tmpl, "metadata", "labels") or {}
            pod = _dig(tmpl, "spec") or {}
            if not isinstance(labels, dict) or not isinstance(pod, dict):
                problems.append(f"{d.ident}: no pod template")
                continue
            workloads.append(_Workload(d, kind, name, ns, labels, pod))
            if not _matches(_dig(b, "spec", "selector"), labels):
                problems.append(f"{d.ident}: spec.selector does not match its pod template labels")
        elif kind == "Service":
            services[name] = b
    if len(namespaces) > 1:
        shown = ", ".join(sorted(str(n) for n in namespaces))
        problems.append(f"objects are spread over namespaces {shown}; references assume one")

    def selected(selector: Any) -> list[_Workload]:
        return [w for w in workloads if _matches(selector, w.labels)]

    # Workloads: probes, StatefulSet services, Secret and ConfigMap references.
    for w in workloads:
        for c in w.containers():
            ports = _container_ports(c)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                for action in ("httpGet", "tcpSocket", "grpc"):
                    port = _dig(c, probe, action, "port")
                    if port is not None and port not in ports:
                        problems.append(
                            f"{w.doc.ident}: container {c.get('name')} {probe} port {port!r} "
                            "is not one of its containerPorts"
                        )
        if w.kind == "StatefulSet":
            svc_name = _dig(w.doc.body, "spec", "serviceName")
            svc = services.get(svc_name) if isinstance(svc_name, str) else None
            if svc is None:
                problems.append(
                    f"{w.doc.ident}: serviceName {svc_name!r} is not a rendered Service"
                )
            elif _dig(svc, "spec", "clusterIP") != "None":
                problems.append(f"{w.doc.ident}: serviceName {svc_name} is not a headless Service")
        for kind, name, where in _secret_refs(w.pod):
            if (kind, name) not in rendered and not (kind == "Secret" and name in external):
                problems.append(
                    f"{w.doc.ident}: {where} needs {kind} {name}, which is neither rendered "
                    f"nor listed as external in {KUSTOMIZATION}"
                )

    for d in objects:
        b = d.body
        kind = b["kind"]
        spec = b.get("spec") if isinstance(b.get("spec"), dict) else {}
        if kind == "Service":
            selector = spec.get("selector")
            if not isinstance(selector, dict) or not selector:
                problems.append(f"{d.ident}: has no selector")
                continue
            hits = selected({"matchLabels": selector})
            if len(hits) != 1:
                names = ", ".join(w.name for w in hits) or "none"
                problems.append(
                    f"{d.ident}: selector {selector} matches {len(hits)} workloads ({names}), "
                    "not exactly one"
                )
                continue
            ports = hits[0].ports()
            for p in _list(spec.get("ports")):
                target = p.get("targetPort", p.get("port")) if isinstance(p, dict) else None
                if target not in ports:
                    problems.append(
                        f"{d.ident}: targetPort {target!r} is not a containerPort of "
                        f"{hits[0].kind} {hits[0].name}"
                    )
        elif kind == "PodDisruptionBudget":
            if not selected(spec.get("selector")):
                problems.append(f"{d.ident}: selector matches no workload")
        elif kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            target = [
                w for w in workloads if w.kind == ref.get("kind") and w.name == ref.get("name")
            ]
            if not target:
                problems.append(
                    f"{d.ident}: scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not a "
                    "rendered workload"
                )
            elif any(
                _dig(m, "resource", "name") == "cpu" for m in _list(spec.get("metrics"))
            ) and not all(_dig(c, "resources", "requests", "cpu") for c in target[0].containers()):
                problems.append(
                    f"{d.ident}: scales on CPU utilisation but {ref.get('name')} has no CPU requests"
                )
        elif kind == "Ingress":
            for tls in _list(spec.get("tls")):
                secret = tls.get("secretName") if isinstance(tls, dict) else None
                if secret and ("Secret", secret) not in rendered and secret not in external:
                    problems.append(
                        f"{d.ident}: TLS Secret {secret} is neither rendered nor listed as "
                        f"external in {KUSTOMIZATION}"
                    )
            backends = [spec.get("defaultBackend")] if spec.get("defaultBackend") else []
            for rule in _list(spec.get("rules")):
                for path in _list(_dig(rule, "http", "paths")):
                    backends.append(_dig(path, "backend"))
            for backend in backends:
                name = _dig(backend, "service", "name")
                port = _dig(backend, "service", "port") or {}
                svc = services.get(name) if isinstance(name, str) else None
                if svc is None:
                    problems.append(f"{d.ident}: backend Service {name!r} is not rendered")
                    continue
                svc_ports = _list(_dig(svc, "spec", "ports"))
                if "number" in port:
                    ok = any(p.get("port") == port["number"] for p in svc_ports)
                else:
                    ok = any(p.get("name") == port.get("name") for p in svc_ports)
                if not ok:
                    problems.append(
                        f"{d.ident}: backend port {port} is not a port of Service {name}"
                    )
        elif kind == "NetworkPolicy":
            if not selected(spec.get("podSelector")):
                problems.append(f"{d.ident}: podSelector selects no workload")
            for rule in _list(spec.get("ingress")):
                for peer in _list(_dig(rule, "from")):
                    if (
                        isinstance(peer, dict)
                        and "podSelector" in peer
                        and "namespaceSelector" not in peer
                        and not selected(peer["podSelector"])
                    ):
                        problems.append(f"{d.ident}: a from.podSelector selects no workload")
    return problems


def verify_k8s(files: Mapping[str, str], versions: Sequence[str] = VERSIONS) -> list[CheckResult]:
    """Schema results for each version, the kustomization's, then one for the references."""
    results = validate_schemas(files, versions)
    problems = cross_check(files)
    results.append(CheckResult("k8s-cross-check", not problems, "\n".join(problems) or "OK"))
    return results


__all__ = [
    "VERSIONS",
    "check_kustomization",
    "cross_check",
    "external_secrets",
    "validate_schemas",
    "verify_k8s",
]
