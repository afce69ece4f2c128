"""Atomic writes and unified diffs, so a failed run never leaves half a config.

``write_all`` is all-or-nothing across files: every new text is written and
fsynced to a hidden temp file next to its target first, and only then are the
temps renamed into place. Each old file is kept as a hard link until every
rename has succeeded, so a failure at any step (a full disk, a permission, a
rename refused) puts every old file back exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ops.errors import OutputError

#: The temp files ``atomic_write`` and ``write_all`` make: ``.NAME.XXXXXXXX.tmp``
#: (``tempfile.mkstemp``'s eight random characters). Only names of this shape
#: are ever swept.
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
#: A temp this old is from a run that died, even if another run holds no lock.
STALE_TEMP_AGE_S = 3600.0
DEFAULT_MODE = 0o644


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def write_target(path: Path) -> Path:
    """Where writing ``path`` really goes: a symlink is written through, so the link stays."""
    path = Path(path)
    if path.is_symlink():
        return Path(os.path.realpath(path))
    return path


def _mode_of(path: Path, default: int) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return default


def _temp_for(target: Path) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    return fd, Path(name)


def _write_temp(target: Path, data: bytes, mode: int) -> Path:
    fd, tmp = _temp_for(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory + rename.

    A symlink is written through (the link stays a link); an existing file keeps
    its mode unless ``mode`` is given; a new one gets ``mode`` or 0644.
    """
    write_all(Path(path).parent, {Path(path).name: text}, mode=mode)


def usable_dir(directory: Path) -> None:
    """Refuse, as one OutputError line, a directory path no call can use: a name
    too long for the file system, a loop of symbolic links, a file on the way."""
    try:
        Path(directory).resolve()
        blocker = not_a_directory(Path(directory))
    except RuntimeError:  # Python 3.11's resolve(): "Symlink loop from ..."
        raise OutputError(f"cannot use {directory}: a loop of symbolic links") from None
    except OSError as exc:
        raise OutputError(f"cannot use {directory}: {exc.strerror or exc}") from None
    if blocker is not None:
        raise OutputError(f"cannot write under {directory}: {blocker} is not a directory")


def not_a_directory(directory: Path) -> Path | None:
    """The nearest existing ancestor of ``directory`` if it is a file, else None:
    mkdir would only say "File exists", which names nothing useful."""
    current = Path(directory)
    while not current.exists():
        if current.parent == current:
            return None
        current = current.parent
    return None if current.is_dir() else current


def _preflight(targets: Iterable[Path]) -> None:
    for target in targets:
        parent = target.parent
        while not parent.exists():
            if parent.parent == parent:
                break
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"cannot write {target}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {target}: no write permission on {parent}")
        if target.exists() and (target.is_dir() or not os.access(target, os.W_OK)):
            raise OutputError(f"cannot write {target}: not a writable file")


@dataclass
class _Step:
    shown: Path  # the path the caller named (for messages)
    real: Path  # where the bytes go (a symlink's target)
    temp: Path | None = None  # new content, renamed onto ``real``
    backup: Path | None = None  # the old file, kept until every rename succeeded
    done: bool = False


def write_all(
    root: Path,
    files: Mapping[str, str],
    *,
    remove: Iterable[str] = (),
    mode: int | None = None,
) -> list[Path]:
    """Write every file under ``root`` and remove ``remove``, all or nothing.

    Order: check every target is writable; make missing directories; write and
    fsync every temp; hard-link every old file to a backup; rename every temp
    into place and move every removed file to a backup. Any failure undoes all
    of it (renames back, temps and new directories removed), so the files on
    disk are either all old or all new. Symlinked targets are written through;
    existing files keep their mode.
    """
    root = Path(root)
    steps = [_Step(root / rel, write_target(root / rel)) for rel in files]
    gone = [_Step(root / rel, root / rel) for rel in remove]
    _preflight(s.real for s in steps)
    made: list[Path] = []
    current: Path = root
    try:
        for step in steps:
            current = step.shown
            _make_parents(step.real.parent, made)
        for step, text in zip(steps, files.values(), strict=True):
            current = step.shown
            new_mode = mode if mode is not None else _mode_of(step.real, DEFAULT_MODE)
            step.temp = _write_temp(step.real, text.encode("utf-8"), new_mode)
        for step in [*steps, *gone]:
            current = step.shown
            if step.real.exists() or step.real.is_symlink():
                step.backup = _backup(step.real)
        for step in steps:
            current = step.shown
            assert step.temp is not None
            os.replace(step.temp, step.real)
            step.temp, step.done = None, True
        for step in gone:
            current = step.shown
            if step.backup is not None:
                os.unlink(step.real)
                step.done = True
    except OSError as exc:
        _undo(steps, gone, made)
        raise OutputError(f"cannot write {current}: {_why(exc)}; nothing was changed") from exc
    except BaseException:
        _undo(steps, gone, made)
        raise
    for step in [*steps, *gone]:
        if step.backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(step.backup)
    for directory in {s.real.parent for s in [*steps, *gone]}:
        _fsync_dir(directory)
    return [s.shown for s in steps]


def _make_parents(directory: Path, made: list[Path]) -> None:
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        d.mkdir()
        made.append(d)


def _backup(path: Path) -> Path:
    """A hard link to the old file under a temp name (swept if we die), or a copy."""
    fd, name = _temp_for(path)
    os.close(fd)
    backup = Path(name)
    os.unlink(backup)
    try:
        if path.is_symlink():
            os.symlink(os.readlink(path), backup)
        else:
            os.link(path, backup)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        import shutil

        shutil.copy2(path, backup)
    return backup


def _undo(steps: list[_Step], gone: list[_Step], made: list[Path]) -> None:
    for step in [*steps, *gone]:
        with contextlib.suppress(OSError):
            if step.done and step.backup is not None:
                os.replace(step.backup, step.real)
                step.backup = None
            elif step.done:
                os.unlink(step.real)  # a new file: there was nothing before
        for leftover in (step.temp, step.backup):
            if leftover is not None:
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
    for d in reversed(made):
        with contextlib.suppress(OSError):
            d.rmdir()


# ----------------------------------------------------------------- killed runs


@contextlib.contextmanager
def dir_lock(directory: Path, wait: float, what: str = "another run") -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``directory`` itself (nothing is left behind).

    Yields True when held, False where the file system has no locks (then a
    caller must assume others may be running). Waits up to ``wait`` seconds,
    then raises OutputError.
    """
    import fcntl

    directory = Path(directory)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputError(f"cannot lock {directory}: {_why(exc)}") from exc
    try:
        deadline = time.monotonic() + wait
        held = True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputError(
                        f"{directory}: {what} is writing here (it holds the lock); "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    held = False
                    break
                raise OutputError(f"cannot lock {directory}: {_why(exc)}") from exc
        yield held
    finally:
        os.close(fd)


def sweep_temps(
    root: Path, names: Iterable[str], *, older_than: float | None = None, now: float | None = None
) -> list[Path]:
    """Remove our own temp files (``TEMP_RE``) left next to ``names`` under ``root``.

    ``older_than`` None removes every one (the caller holds the lock, so no run
    is writing); else only those whose mtime is that many seconds old.
    """
    root = Path(root)
    wanted: dict[Path, set[str]] = {}
    for rel in names:
        for target in {root / rel, write_target(root / rel)}:
            wanted.setdefault(target.parent, set()).add(target.name)
    now = time.time() if now is None else now
    removed: list[Path] = []
    for directory, basenames in sorted(wanted.items()):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            m = TEMP_RE.match(entry.name)
            if m is None or m.group("name") not in basenames:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                    continue
                if older_than is not None and now - st.st_mtime < older_than:
                    continue
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                continue
    return removed


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
