"""A tiny local image for Docker tests, built without a registry.

The rootfs is the host's static busybox plus applet symlinks and a ``/www``
document root (``/www/healthz`` for HTTP health checks), tarred and fed to
``docker import``. The tag is fixed; a label records a digest of the busybox
binary and of the layout, so a stale image from an older layout is rebuilt
instead of silently reused.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

IMAGE = "vots-ops-test/busybox:1"
LABEL = "io.vots.test.busybox-digest"
LAYOUT_VERSION = "1"
APPLETS = (
    "sh", "ash", "sleep", "httpd", "wget", "cat", "echo", "ls", "id", "ps", "nproc",
    "test", "true", "false", "env", "head", "grep", "touch", "mkdir", "rm", "kill",
)  # fmt: skip
DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp", "www", "data")
HEALTHZ = b"ok\n"


def _docker() -> str:
    found = shutil.which("docker")
    if not found:
        raise RuntimeError("docker is not installed")
    return found


def _busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file():
            return path
    raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")


def _digest(busybox: bytes) -> str:
    h = hashlib.sha256(busybox)
    h.update(f"layout={LAYOUT_VERSION};applets={','.join(APPLETS)};dirs={','.join(DIRS)}".encode())
    return h.hexdigest()[:32]


def _current_digest(docker: str) -> str | None:
    proc = subprocess.run(
        [
            docker,
            "image",
            "inspect",
            "--format",
            f'{{{{ index .Config.Labels "{LABEL}" }}}}',
            IMAGE,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_id(docker: str) -> str | None:
    proc = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _add(
    tar: tarfile.TarFile, name: str, *, kind: bytes, mode: int, data: bytes = b"", link: str = ""
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    if kind == tarfile.SYMTYPE:
        info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _rootfs_tar(path: Path, busybox: bytes) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in DIRS:
            _add(tar, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _add(tar, "bin/busybox", kind=tarfile.REGTYPE, mode=0o755, data=busybox)
        for applet in APPLETS:
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox")
        _add(
            tar, "etc/passwd", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:0:root:/:/bin/sh\n"
        )
        _add(tar, "etc/group", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:\n")
        _add(tar, "www/healthz", kind=tarfile.REGTYPE, mode=0o644, data=HEALTHZ)


def busybox_image() -> str:
    """The tag of a local busybox image, importing it first if it is missing or stale
    (under a lock shared with every test process on this machine, as the other images)."""
    from tests.support.base_image import file_lock

    docker = _docker()
    busybox = _busybox().read_bytes()
    digest = _digest(busybox)
    if _current_digest(docker) == digest:
        return IMAGE
    with file_lock("vots-ops-test-busybox"):
        return _import(docker, busybox, digest)


def _import(docker: str, busybox: bytes, digest: str) -> str:
    current = _current_digest(docker)
    if current == digest:  # another process imported it meanwhile
        return IMAGE
    stale = _image_id(docker) if current is not None else None
    with tempfile.TemporaryDirectory(prefix="vots-ops-busybox-") as tmp:
        archive = Path(tmp) / "rootfs.tar"
        _rootfs_tar(archive, busybox)
        subprocess.run(
            [
                docker, "import",
                "--change", "ENV PATH=/bin",
                "--change", 'CMD ["sh"]',
                "--change", f"LABEL {LABEL}={digest}",
                str(archive), IMAGE,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )  # fmt: skip
    if _current_digest(docker) != digest:
        raise RuntimeError(f"docker import did not produce {IMAGE} with {LABEL}={digest}")
    if stale and stale != _image_id(docker):
        # The retagged old layout is now dangling; drop it unless a container still uses it.
        subprocess.run([docker, "image", "rm", stale], capture_output=True, check=False, timeout=60)
    return IMAGE


__all__ = ["IMAGE", "busybox_image"]
