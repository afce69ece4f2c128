"""A local Debian bookworm base image, built without a registry (``vots-ops images bootstrap``).

``debootstrap --variant=minbase`` fills a temp directory from the Debian mirror
this machine's apt already uses, and the tree is streamed into ``docker
import`` (``tar | docker import``, piped in Python). The result is cached by
tag: when ``docker image inspect`` finds the tag, nothing is built. A file lock
keeps two test processes from building at once; the second one waits and then
finds the tag.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ops.errors import ExternalToolError, ToolMissing

IMAGE = "vots-local/debian:bookworm-minbase"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
DEBOOTSTRAP_TIMEOUT = 1800.0
IMPORT_TIMEOUT = 600.0
LOCK_TIMEOUT = DEBOOTSTRAP_TIMEOUT + IMPORT_TIMEOUT + 60

# Seconds spent in each step of the last build in this process ("debootstrap",
# "import", "total"); empty when the image was already there.
TIMINGS: dict[str, float] = {}

log = logging.getLogger(__name__)


def _tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/sbin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ToolMissing(name, f"apt-get install {name}")


# --------------------------------------------------------------------------- the mirror


def _one_line_sources(text: str) -> Iterator[tuple[str, str, list[str], str | None]]:
    """``deb [signed-by=…] URI SUITE COMPONENT…`` lines → (uri, suite, components, keyring)."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        keyring = None
        options = re.match(r"deb\s+\[([^\]]*)\]\s*", line)
        if options:
            for opt in options.group(1).split():
                key, _, value = opt.partition("=")
                if key == "signed-by":
                    keyring = value
            line = "deb " + line[options.end() :]
        words = line.split()
        if len(words) >= 4:
            yield words[1], words[2], words[3:], keyring


def _deb822_sources(text: str) -> Iterator[tuple[str, str, list[str], str | None]]:
    """deb822 stanzas (``Types: deb`` / ``URIs:`` / ``Suites:`` / ``Components:``)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#") or not raw.strip():
                continue
            if raw[0].isspace() and key is not None:
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        keyring = fields.get("signed-by") or None
        if keyring is not None and not keyring.startswith("/"):
            keyring = None  # an inline key block, not a file debootstrap can use
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite, components, keyring


def apt_mirror(suite: str = SUITE) -> tuple[str, str]:
    """The (mirror URI, keyring) apt uses on this machine for ``suite`` main."""
    found: list[tuple[str, str, list[str], str | None]] = []
    files = [APT_SOURCES] if APT_SOURCES.is_file() else []
    if APT_SOURCES_DIR.is_dir():
        files += sorted(APT_SOURCES_DIR.glob("*.list")) + sorted(APT_SOURCES_DIR.glob("*.sources"))
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        parse = _deb822_sources if path.suffix == ".sources" else _one_line_sources
        found.extend(parse(text))
    for uri, entry_suite, components, keyring in found:
        if entry_suite == suite and "main" in components and uri.startswith(("http", "file:")):
            return uri, keyring or DEFAULT_KEYRING
    return DEFAULT_MIRROR, DEFAULT_KEYRING


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def file_lock(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive ``flock`` on ``$TMPDIR/<name>.lock``, shared by every process here."""
    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with path.open("a+b") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ExternalToolError(
                        f"{path} is still locked after {timeout:g}s: another build holds it"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the build


def image_exists(docker: str, tag: str) -> bool:
    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        [docker, "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return proc.returncode == 0


def _mounts_below(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as fh:
        points = [line.split()[1].replace("\\040", " ") for line in fh]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_tree(root: Path) -> None:
    """Remove ``root`` after lazily unmounting what a failed debootstrap left mounted
    under it (proc, sys), deepest first; never walk into a live filesystem."""
    for point in _mounts_below(root):
        subprocess.run(  # noqa: S603 - an argument list, never a shell
            [_tool("umount"), "-l", point], capture_output=True, check=False, timeout=60
        )
    left = _mounts_below(root)
    if left:
        log.warning("not removing %s: still mounted below it: %s", root, left)
        return
    shutil.rmtree(root, ignore_errors=True)


def _debootstrap(rootfs: Path, mirror: str, keyring: str) -> None:
    argv = [_tool("debootstrap"), "--variant=minbase"]
    if Path(keyring).is_file():
        argv.append(f"--keyring={keyring}")
    argv += [SUITE, str(rootfs), mirror]
    proc = subprocess.run(  # noqa: S603 - an argument list, never a shell
        argv, capture_output=True, text=True, check=False, timeout=DEBOOTSTRAP_TIMEOUT
    )
    if proc.returncode != 0:
        log_tail = ""
        debootstrap_log = rootfs / "debootstrap" / "debootstrap.log"
        if debootstrap_log.is_file():
            log_tail = debootstrap_log.read_text(errors="replace")[-4000:]
        raise ExternalToolError(
            f"debootstrap failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}\n{log_tail}"
        )


def _import(docker: str, rootfs: Path, tag: str) -> None:
    """``tar -C rootfs -c . | docker import - tag``, the pipe held by two Popen objects."""
    tar_argv = [
        _tool("tar"), "--numeric-owner",
        # apt's package lists and caches, as in debian:*-slim: images run apt-get update.
        "--exclude=./var/lib/apt/lists/*_*", "--exclude=./var/cache/apt/*.bin",
        "--exclude=./var/cache/apt/archives/*.deb",
        "-C", str(rootfs), "-c", ".",
    ]  # fmt: skip
    import_argv = [
        docker, "import",
        "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", 'CMD ["bash"]',
        "-", tag,
    ]  # fmt: skip
    with tempfile.TemporaryFile() as tar_err:
        tar = subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=tar_err)  # noqa: S603
        try:
            importer = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
                import_argv,
                stdin=tar.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except BaseException:
            tar.kill()
            tar.wait(timeout=60)
            raise
        assert tar.stdout is not None
        tar.stdout.close()  # the importer holds the only read end: tar sees EPIPE if it dies
        try:
            out, err = importer.communicate(timeout=IMPORT_TIMEOUT)
            tar_rc = tar.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for proc in (tar, importer):
                proc.kill()
                proc.wait(timeout=60)
            raise
        tar_err.seek(0)
        tar_msg = tar_err.read().decode(errors="replace")[-4000:]
    if tar_rc != 0:
        raise ExternalToolError(f"tar failed ({tar_rc}):\n{tar_msg}")
    if importer.returncode != 0:
        raise ExternalToolError(
            f"docker import failed ({importer.returncode}):\n"
            f"{out.decode(errors='replace')}\n{err.decode(errors='replace')}"
        )


def debian_base_image(tag: str = IMAGE) -> str:
    """The tag of a local Debian bookworm (minbase) image, built first if it is missing."""
    docker = _tool("docker")
    if image_exists(docker, tag):
        return tag
    with file_lock("vots-local-debian-" + re.sub(r"[^A-Za-z0-9_.-]", "-", tag)):
        if image_exists(docker, tag):  # built by another process while we waited
            return tag
        mirror, keyring = apt_mirror()
        TIMINGS.clear()
        start = time.monotonic()
        # /var/tmp: a disk-backed directory (no noexec/nodev tmpfs) big enough for a rootfs.
        parent = "/var/tmp" if os.access("/var/tmp", os.W_OK) else None
        work = Path(tempfile.mkdtemp(prefix="vots-ops-debootstrap-", dir=parent))
        rootfs = work / "rootfs"
        try:
            _debootstrap(rootfs, mirror, keyring)
            TIMINGS["debootstrap"] = time.monotonic() - start
            step = time.monotonic()
            _import(docker, rootfs, tag)
            TIMINGS["import"] = time.monotonic() - step
        finally:
            _remove_tree(work)
        TIMINGS["total"] = time.monotonic() - start
        message = (
            f"built {tag} from {mirror} in {TIMINGS['total']:.1f}s "
            f"(debootstrap {TIMINGS['debootstrap']:.1f}s, import {TIMINGS['import']:.1f}s)"
        )
        log.info(message)
    if not image_exists(docker, tag):
        raise ExternalToolError(f"docker import did not produce {tag}")
    return tag


__all__ = ["IMAGE", "TIMINGS", "apt_mirror", "debian_base_image", "file_lock", "image_exists"]
