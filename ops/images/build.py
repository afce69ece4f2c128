"""Every image a stack runs, ready on the engine: built, reused, pulled or stood in for.

``resolve(loaded, ...)`` goes through the stack's services in dependency order
and returns one :class:`ImageResult` each, saying which image the containers
will run (``use``) and how it got there:

* **built / reused**: a service with ``build:`` (and the edge) is built on the
  local base (``ops.images.base``) through ``--build-arg BASE_IMAGE``, tagged
  ``<repository>:<digest>`` where the digest covers everything that goes into
  the image (the Dockerfile, the context's files or, for a Python service, its
  locks and package, and the base image's id). A tag that exists is reused, so
  a second ``vots-ops images build`` builds nothing. The stack's own reference
  (``vots/agent:latest``) is tagged too, so the compose file runs as it is.
* **present / pulled**: an image the stack names without building it is used
  when the engine has it, pulled otherwise (unless ``offline``).
* **stand-in**: where the upstream image is absent and cannot be pulled, a
  service that declares ``offline:`` (a bundled recipe from
  ``ops/images/standins`` or a build context) gets an equivalent built from
  Debian's packages, tagged ``vots-standin/<name>:<digest>`` and labelled
  ``io.vots.standin=<upstream reference>``: never the upstream name.
* **missing**: no image and nothing to build one from; ``resolve`` raises
  :class:`ImagesUnavailable` listing each with what would fix it, unless the
  caller leaves those services out.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ops.errors import ExternalToolError, OpsError
from ops.images.python import image_id
from ops.proc import which
from ops.stack import LoadedStack, Workload, workloads

STANDINS_DIR = Path(__file__).with_name("standins")
STANDIN_REPOSITORY = "vots-standin"
STANDIN_LABEL = "io.vots.standin"
IMAGE_LABEL = "io.vots.image"
BUILD_TIMEOUT = 1800.0
PULL_TIMEOUT = 600.0
_SKIP_PARTS = {".wheelhouse", "__pycache__", ".git", ".venv", "tests", ".pytest_cache"}

Action = Literal["built", "reused", "present", "pulled", "standin-built", "standin-reused"]


class ImagesUnavailable(OpsError):
    """Images the stack needs are not on the engine and nothing here can make them."""


@dataclass(frozen=True)
class ImageResult:
    """One service's image: what the stack names, what its containers run, and how."""

    service: str
    ref: str  # what stack.yaml names (or the built-in's default image)
    use: str  # the tag the containers run
    action: Action
    seconds: float = 0.0
    standin_for: str | None = None  # the upstream reference a stand-in replaces
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def standin(self) -> bool:
        return self.standin_for is not None

    @property
    def did_work(self) -> bool:
        return self.action in ("built", "pulled", "standin-built")


@dataclass(frozen=True)
class Missing:
    service: str
    ref: str
    why: str


def bundled_standins() -> list[str]:
    return sorted(p.name for p in STANDINS_DIR.iterdir() if (p / "Dockerfile").is_file())


# --------------------------------------------------------------------------- engine helpers


def _docker() -> str:
    return which("docker")


def image_labels(ref: str) -> dict[str, str]:
    import json

    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [_docker(), "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        return {}
    labels = json.loads(proc.stdout or "null")
    return dict(labels or {})


def _tag(source: str, target: str) -> None:
    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [_docker(), "tag", source, target], capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise ExternalToolError(f"docker tag {source} {target} failed: {proc.stderr.strip()}")


def _pull(ref: str) -> str | None:
    """``docker pull``; the error line when it fails (no registry, no such image)."""
    try:
        proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
            [_docker(), "pull", "--quiet", ref],
            capture_output=True,
            text=True,
            check=False,
            timeout=PULL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"docker pull gave no answer in {PULL_TIMEOUT:g}s"
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"docker pull exited with {proc.returncode}"


def _docker_build(context: Path, tag: str, base: str, labels: dict[str, str]) -> None:
    argv = [_docker(), "build", "--pull=false", "--force-rm", "--build-arg", f"BASE_IMAGE={base}"]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += ["-t", tag, str(context)]
    # The classic builder: engines without buildx build the same way.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    try:
        proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
            argv, capture_output=True, text=True, check=False, timeout=BUILD_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired:
        raise ExternalToolError(f"docker build of {context} took over {BUILD_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ExternalToolError(f"docker build of {context} failed ({proc.returncode}):\n{tail}")


# --------------------------------------------------------------------------- digests


def _context_files(context: Path) -> list[Path]:
    return sorted(
        p
        for p in context.rglob("*")
        if p.is_file()
        and not _SKIP_PARTS.intersection(p.relative_to(context).parts)
        and p.suffix not in (".pyc", ".pyo")
    )


def context_digest(context: Path, base_id: str) -> str:
    """What a plain build context is made of: every file in it, and the base."""
    h = hashlib.sha256(base_id.encode())
    for path in _context_files(context):
        data = path.read_bytes()
        name = str(path.relative_to(context)).encode()
        h.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _repository(ref: str) -> str:
    """``vots/agent:latest`` → ``vots/agent`` (a registry port is not a tag)."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


# --------------------------------------------------------------------------- one image


def _build_context(
    service: str, context: Path, ref: str, base: str, standin_for: str | None
) -> ImageResult:
    from ops.images import python

    start = time.monotonic()
    base_id = image_id(base)
    if base_id is None:
        raise ExternalToolError(f"the base image {base} is not on the engine")
    repository = _repository(ref) if standin_for is None else f"{STANDIN_REPOSITORY}/{service}"
    if python.is_python_context(context) and standin_for is None:
        built = python.build_image(
            python.service_for(service, context), base, repository=repository, label=IMAGE_LABEL
        )
        tag, did, steps = built.tag, built.built, dict(built.seconds)
    else:
        tag = f"{repository}:{context_digest(context, base_id)[:16]}"
        did, steps = False, {}
        if image_id(tag) is None:
            from ops.images.base import file_lock

            labels = {IMAGE_LABEL: service}
            if standin_for is not None:
                labels[STANDIN_LABEL] = standin_for
                labels[f"{STANDIN_LABEL}.recipe"] = context.name
            with file_lock("vots-image-" + tag.replace("/", "-").replace(":", "-")):
                if image_id(tag) is None:
                    _docker_build(context, tag, base, labels)
                    did = True
                    steps["build"] = time.monotonic() - start
    if standin_for is None and ref != tag:
        _tag(tag, ref)  # the compose file's own reference runs the same image
    seconds = time.monotonic() - start
    if standin_for is not None:
        action: Action = "standin-built" if did else "standin-reused"
    else:
        action = "built" if did else "reused"
    return ImageResult(service, ref, tag, action, seconds, standin_for, steps)


def standin_context(loaded: LoadedStack, w: Workload) -> Path | None:
    if w.offline is None:
        return None
    if w.offline in bundled_standins():
        return STANDINS_DIR / w.offline
    path = loaded.path.parent / w.offline
    if not (path / "Dockerfile").is_file():
        raise loaded.error(
            f"offline: {w.offline!r} is neither a bundled stand-in "
            f"({', '.join(bundled_standins())}) nor a directory with a Dockerfile",
            (*w.yaml_loc, "offline"),
        )
    return path


# --------------------------------------------------------------------------- the stack


def build_order(loaded: LoadedStack) -> list[Workload]:
    """Services in dependency order (what a service depends on first), built-ins last."""
    ws = {w.name: w for w in workloads(loaded.stack)}
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in ws:
            return
        seen.add(name)
        spec = ws[name].spec
        for dep in spec.depends_on if spec else ():
            visit(dep)
        done.append(name)

    for name in ws:
        visit(name)
    return [ws[n] for n in done]


def resolve(
    loaded: LoadedStack,
    *,
    base: str | None = None,
    only: Iterable[str] | None = None,
    without: Iterable[str] = (),
    offline: bool = False,
    build: bool = True,
    on_start: Callable[[Workload, str], None] | None = None,
    on_done: Callable[[ImageResult], None] | None = None,
) -> list[ImageResult]:
    """An image for every service (but ``without``), in dependency order.

    ``offline`` never pulls; ``build=False`` fails instead of building. The base
    image is bootstrapped (``debian_base_image``) the first time a build needs it.
    """
    skip = set(without)
    wanted = set(only) if only is not None else None
    root = loaded.path.parent
    results: list[ImageResult] = []
    missing: list[Missing] = []
    base_tag: list[str] = []

    def the_base() -> str:
        if not base_tag:
            from ops.images.base import IMAGE, debian_base_image

            base_tag.append(debian_base_image(base or IMAGE))
        return base_tag[0]

    for w in build_order(loaded):
        if w.name in skip or (wanted is not None and w.name not in wanted):
            continue
        ref = w.image or f"{loaded.stack.project}/{w.name}:latest"
        if w.build is not None:
            if not build:
                if image_id(ref) is None:
                    missing.append(Missing(w.name, ref, "not built (vots-ops images build)"))
                continue
            if on_start:
                on_start(w, f"building {w.build}")
            result = _build_context(w.name, root / w.build, ref, the_base(), None)
        elif image_id(ref) is not None:
            result = ImageResult(w.name, ref, ref, "present")
        else:
            why = "offline: not pulled" if offline else None
            if not offline:
                if on_start:
                    on_start(w, f"pulling {ref}")
                start = time.monotonic()
                why = _pull(ref)
                if why is None:
                    result = ImageResult(w.name, ref, ref, "pulled", time.monotonic() - start)
                    results.append(result)
                    if on_done:
                        on_done(result)
                    continue
            context = standin_context(loaded, w)
            if context is None:
                missing.append(Missing(w.name, ref, f"{why}; no offline stand-in declared"))
                continue
            if not build:
                missing.append(Missing(w.name, ref, f"{why}; stand-in not built"))
                continue
            if on_start:
                on_start(w, f"building the offline stand-in for {ref}")
            result = _build_context(w.name, context, ref, the_base(), ref)
        results.append(result)
        if on_done:
            on_done(result)
    if missing:
        lines = "; ".join(f"{m.service} ({m.ref}): {m.why}" for m in missing)
        raise ImagesUnavailable(
            f"no image for {len(missing)} service(s): {lines}. Give the service an "
            "'offline:' stand-in in the stack, load the image (docker load), or leave "
            "it out (deploy --without NAME)",
            fields=("without",),
        )
    return results


def standins_of(refs: Sequence[str]) -> dict[str, str]:
    """``{tag: upstream reference}`` for the stand-ins among ``refs``."""
    out = {}
    for ref in refs:
        upstream = image_labels(ref).get(STANDIN_LABEL)
        if upstream:
            out[ref] = upstream
    return out
