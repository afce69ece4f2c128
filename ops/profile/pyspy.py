"""Python backend: py-spy, run from the host against a PID (also one inside a container).

``record`` samples for a duration into py-spy's raw (folded) format with
``--function`` (one frame per function, not per line, so the top table adds
up); ``dump`` takes one snapshot of every thread. Non-blocking sampling is the
default: py-spy then reads the target's memory without pausing it (the
service's time on a CPU is unchanged; blocking mode stopped it 6.7% of the
time at 100 Hz in bench/profile_overhead.py), at the price of some torn
stacks (a frame read while it changes; ~5% under load, counted in
``meta["sample_errors"]``). ``blocking=True`` pauses the process for each
sample, for exact stacks.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

from ops.errors import ExternalToolError, OpsError, OutputError, TargetError
from ops.extras import require_tool
from ops.proc import supervise
from ops.profile.model import Profile, parse_folded
from ops.profile.target import Target, start_time


class DumpFrame(TypedDict, total=False):
    """One frame of ``py-spy dump --json``."""

    name: str
    filename: str
    short_filename: str | None
    module: str | None
    line: int


class DumpThread(TypedDict, total=False):
    """One thread of ``py-spy dump --json``: its ids, state and frames (leaf first)."""

    thread_id: int
    thread_name: str | None
    os_thread_id: int | None
    active: bool
    owns_gil: bool
    frames: list[DumpFrame]


def pyspy_path() -> str:
    """py-spy next to this Python (a venv's bin/ is often not on PATH), else on PATH."""
    return require_tool("py-spy", "profile", "profile")


#: A root frame of --subprocesses; its command line may span lines (``python -c "…"``).
_PROCESS_FRAME = re.compile(r'(?ms)(?<![^;\n])process \d+:(".*?")(?=;)')


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _ptrace_scope() -> str:
    try:
        return Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        return "?"


def _failure(stderr: str, target: Target) -> OpsError:
    """py-spy's failure as an error: a cause the user can fix (permissions, the
    target) is bad input; anything else is the tool failing (exit 3)."""
    line = explain(stderr, target)
    if line.startswith("py-spy failed"):
        return ExternalToolError(line)
    return TargetError(line)


def explain(stderr: str, target: Target) -> str:
    """py-spy's error output -> one line that names the cause and the fix."""
    text = " ".join(stderr.split())
    low = text.lower()
    if (
        "permission denied" in low
        or "operation not permitted" in low
        or "elevated permissions" in low
    ):
        scope = _ptrace_scope()
        yama = f", kernel.yama.ptrace_scope={scope}" if scope != "?" else ""
        return (
            f"ptrace refused for PID {target.pid}: reading another process needs CAP_SYS_PTRACE "
            f"(run as root without dropping it, or with sudo{yama})"
        )
    if "no such process" in low or "failed to open process" in low:
        return f"PID {target.pid} exited or cannot be opened ({target.cmdline[:60]})"
    if "failed to find python version" in low or "python interpreter" in low:
        return f"PID {target.pid} is not a Python process py-spy can read ({target.cmdline[:60]})"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith(" ")]
    errors = [
        ln for ln in lines if ln.lower().startswith("error") and "backtrace" not in ln.lower()
    ]
    useful = [ln for ln in lines if not ln.startswith(("py-spy>", "Stack backtrace"))]
    best = errors[-1] if errors else (useful[-1] if useful else "no error message")
    return f"py-spy failed on PID {target.pid}: {best[:200]}"


#: Below this many free bytes a failed write is put down to a full disk.
FULL_BYTES = 1 << 20


def disk_full(directory: Path) -> OutputError | None:
    """The error to give when the file system holding ``directory`` is (nearly)
    full: a profiler then fails writing its output, often without saying why."""
    import os

    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free >= FULL_BYTES:
        return None
    return OutputError(
        f"{directory.parent}: the disk is full ({free:,} bytes free); "
        "free some space or write the run elsewhere",
        fields=("runs_dir",),
    )


def _write_error(workdir: Path, exc: OSError) -> OutputError:
    return disk_full(workdir) or OutputError(f"cannot write in {workdir}: {exc.strerror}")


def record(
    target: Target,
    *,
    duration_s: float,
    rate_hz: float,
    workdir: Path,
    native: bool = False,
    gil: bool = False,
    idle: bool = False,
    subprocesses: bool = False,
    blocking: bool = False,
    on_tick: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> Profile:
    """Sample ``target`` for ``duration_s``; Ctrl-C (or ``stop``) ends early and keeps what was sampled."""
    if native:
        if target.container:
            raise OpsError(
                f"native frames of {target.label} cannot be unwound from the host (py-spy reads "
                "native stacks only for processes in its own mount namespace); profile without them",
                fields=("native",),
            )
        blocking = True  # py-spy reads native stacks only while the process is paused
    out = workdir / "py-spy.raw"
    argv = [
        pyspy_path(),
        "record",
        "--pid",
        str(target.pid),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    argv += [
        "--duration",
        str(max(1, math.ceil(duration_s))),
        "--rate",
        f"{rate_hz:g}",
        "--function",
    ]
    for flag, on in (
        ("--native", native),
        ("--gil", gil),
        ("--idle", idle),
        ("--subprocesses", subprocesses),
    ):
        if on:
            argv.append(flag)
    if not blocking:
        argv.append("--nonblocking")
    born = start_time(target.pid)
    started = time.time()
    log = workdir / "py-spy.log"
    try:
        err = log.open("wb")
    except OSError as exc:
        raise _write_error(workdir, exc) from None
    with err:
        # py-spy writes what it has sampled on SIGINT, then exits.
        done = supervise(
            argv,
            name="py-spy",
            timeout_s=duration_s + 30,
            stdout=err,
            stderr=err,
            on_tick=on_tick,
            stop=stop,
            grace_s=15,
            log=log,
            die_with_parent=True,
        )
    interrupted = done.interrupted
    elapsed = time.time() - started
    stderr = log.read_text(errors="replace")
    if not out.exists() or (done.returncode not in (0, -signal.SIGINT) and not interrupted):
        full = disk_full(workdir)
        if full is not None:
            raise full
        raise _failure(stderr, target)
    now = start_time(target.pid)
    reused = born is not None and now is not None and now != born
    exited = reused or not _alive(target.pid)
    try:
        text = out.read_text(encoding="utf-8", errors="replace")
        if subprocesses:  # root frames `process 123:"cmd"`: drop the PID so runs compare
            text = _PROCESS_FRAME.sub(lambda m: "process " + " ".join(m[1].split()), text)
        stacks = parse_folded(text)
    except ValueError as exc:
        raise ExternalToolError(
            f"py-spy wrote output vots-ops cannot read ({exc}); see {log}"
        ) from None
    out.unlink()
    counted = re.search(r"Samples: (\d+) Errors: (\d+)", stderr)
    return Profile(
        stacks=stacks,
        target=target.label,
        language="python",
        backend="py-spy record",
        duration_s=round(min(elapsed, duration_s + 1), 3),
        rate_hz=rate_hz,
        started=started,
        meta={
            "pid": target.pid,
            "cmdline": target.cmdline,
            "container": target.container,
            "blocking": blocking,
            "native": native,
            "gil": gil,
            "idle": idle,
            "subprocesses": subprocesses,
            "interrupted": interrupted,
            "target_exited": exited,
            # the target exited and a new process got its PID while sampling
            "pid_reused": reused,
            # py-spy cannot tell idle threads from running ones in a container
            # (its thread ids are the container's): idle time counts as busy.
            "idle_unknown": bool(target.container),
            # Samples py-spy could not read (torn stacks, more in non-blocking mode).
            "sample_errors": int(counted.group(2)) if counted else None,
        },
    )


def dump(
    target: Target, *, native: bool = False, blocking: bool = False
) -> tuple[Profile, list[DumpThread]]:
    """One snapshot of every thread: a Profile with one sample per thread, and py-spy's threads."""
    argv = [pyspy_path(), "dump", "--pid", str(target.pid), "--json"]
    if native:
        if target.container:
            raise OpsError(
                f"native frames of {target.label} cannot be unwound from the host; "
                "dump without them",
                fields=("native",),
            )
        blocking = True
        argv.append("--native")
    if not blocking:
        argv.append("--nonblocking")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        raise ExternalToolError(
            f"py-spy dump did not finish within 30s on PID {target.pid}"
        ) from None
    if proc.returncode != 0:
        raise _failure(proc.stderr or proc.stdout, target)
    try:
        threads: list[DumpThread] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ExternalToolError(f"py-spy dump wrote no JSON ({exc.msg})") from None
    stacks: dict[tuple[str, ...], int] = {}
    for th in threads:
        frames = tuple(
            f"{f['name']} ({f.get('short_filename') or f['filename']}:{f['line']})"
            for f in reversed(th["frames"])
        )
        if frames:
            stacks[frames] = stacks.get(frames, 0) + 1
    profile = Profile(
        stacks=stacks,
        target=target.label,
        language="python",
        backend="py-spy dump",
        duration_s=0.0,
        weight="threads",
        started=time.time(),
        meta={"pid": target.pid, "cmdline": target.cmdline, "threads": len(threads)},
    )
    return profile, threads
