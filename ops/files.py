"""Atomic writes and unified diffs, so a failed run never leaves half a config."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from pathlib import Path

from ops.errors import OutputError


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory + rename."""
    path = Path(path)
    blocker = not_a_directory(path.parent)
    if blocker is not None:
        raise OutputError(f"cannot write {path}: {blocker} is not a directory")
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def not_a_directory(directory: Path) -> Path | None:
    """The nearest existing ancestor of ``directory`` if it is a file, else None:
    mkdir would only say "File exists", which names nothing useful."""
    current = Path(directory)
    while not current.exists():
        if current.parent == current:
            return None
        current = current.parent
    return None if current.is_dir() else current


def write_all(root: Path, files: Mapping[str, str]) -> list[Path]:
    """Write every rendered file under ``root``; check writability of all targets first.

    Checking first means a permission problem on the third file does not leave
    the first two updated and the rest stale.
    """
    root = Path(root)
    targets = [root / rel for rel in files]
    for target in targets:
        parent = target.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {target}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {target}: no write permission on {parent}")
        if target.exists() and (target.is_dir() or not os.access(target, os.W_OK)):
            raise OutputError(f"cannot write {target}: not a writable file")
    for target, text in zip(targets, files.values(), strict=True):
        atomic_write(target, text)
    return targets


def diff_all(root: Path, files: Mapping[str, str]) -> str:
    """Unified diff from what is on disk under ``root`` to what would be written."""
    import difflib

    chunks: list[str] = []
    for rel, new in files.items():
        target = Path(root) / rel
        try:
            old = target.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            old = ""
        except OSError as exc:
            raise OutputError(f"cannot read {target}: {exc.strerror or exc}") from exc
        if old == new:
            continue
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"a/{rel}",
                tofile=f"b/{rel}",
            )
        )
    return "".join(chunks)


def new_run_dir(root: Path, name: str, now: float | None = None) -> tuple[Path, Path]:
    """(staging dir, final dir) for a run named ``name`` under ``root``, stamped
    with ``now`` (epoch seconds; default the clock's).

    The run is built in a hidden staging directory and renamed to the final,
    timestamped name only when complete, so a crash leaves nothing that looks
    like a result.
    """
    import tempfile
    from datetime import UTC, datetime

    when = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    root = root.absolute()  # tools we start may run in another directory
    final = root / f"{name}-{stamp}"
    n = 1
    while final.exists():
        n += 1
        final = root / f"{name}-{stamp}-{n}"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{root}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputError(f"{root}: cannot create the run directory ({exc.strerror})") from None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=root))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the reports from the team
    except OSError as exc:
        raise OutputError(f"{root}: cannot write here ({exc.strerror})") from None
    return staging, final


def finish_run_dir(staging: Path, final: Path) -> Path:
    """Rename a complete run into place; a name taken meanwhile (two runs in one second) gets a suffix."""
    target, n = final, 1
    while True:
        try:
            staging.rename(target)
            return target
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or n > 100:
                raise OutputError(f"cannot move the run into {target}: {exc.strerror}") from None
            n += 1
            target = final.with_name(f"{final.name}-{n}")
