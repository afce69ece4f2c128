"""Which process to profile: a PID, a command-line pattern, a container, or a stack service.

Everything resolves to host PIDs, so the profilers run from the host: py-spy
and perf read a containerised process through ``/proc/PID`` (its ``root``
gives them the container's binaries) and need no tools inside the image. A
container's processes come from the Docker Engine API (``State.Pid`` and its
descendants); a service's containers from the Compose labels of the stack's
project. Ambiguity is an error that lists the candidates, never a guess.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ops.errors import TargetError, TargetUnreachable
from ops.units import shown

if TYPE_CHECKING:
    import psutil


@dataclass(frozen=True)
class Target:
    """One process to sample, with how it was found."""

    pid: int
    cmdline: str
    label: str
    container: str | None = None

    @property
    def name(self) -> str:
        """A short, file-name-safe label for run directories."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label).strip("-")[:60] or str(self.pid)


def _cmdline(proc: psutil.Process) -> str:
    import psutil

    try:
        parts = proc.cmdline()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        parts = []
    except psutil.NoSuchProcess:
        return ""
    return " ".join(parts) or f"[{proc.name()}]"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat), or
    None if there is none. A PID with another start time later is another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def by_pid(pid: int) -> Target:
    import psutil

    try:
        proc = psutil.Process(pid)
        cmd = _cmdline(proc)
    except psutil.NoSuchProcess:
        raise TargetError(f"no process with PID {pid}") from None
    return Target(pid, cmd, f"pid {pid}")


def _ours() -> set[int]:
    """This process and its ancestors: a pattern must never pick the shell that typed it."""
    import psutil

    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


def by_pattern(pattern: str, within: list[int] | None = None) -> Target:
    """The one process whose command line matches ``pattern`` (a regular expression)."""
    import psutil

    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise TargetError(
            f"match {shown(pattern)}: not a regular expression ({exc})", fields=("match",)
        ) from None
    skip = _ours()
    candidates = psutil.process_iter() if within is None else _procs(within)
    found = []
    for proc in candidates:
        if proc.pid in skip:
            continue
        cmd = _cmdline(proc)
        if cmd.startswith("[") and cmd.endswith("]"):
            continue  # a kernel thread (no command line), never a service
        if cmd and rx.search(cmd):
            found.append(Target(proc.pid, cmd, f"pid {proc.pid}"))
    if not found:
        where = " in that container" if within is not None else ""
        raise TargetError(f"no process{where} matches {shown(pattern)}", fields=("match",))
    if len(found) > 1:
        listed = "; ".join(f"{t.pid}: {t.cmdline[:80]}" for t in found[:8])
        more = f"; and {len(found) - 8} more" if len(found) > 8 else ""
        raise TargetError(
            f"{len(found)} processes match {shown(pattern)}, give a narrower pattern or a PID: "
            f"{listed}{more}",
            fields=("match", "pid"),
        )
    return found[0]


def _procs(pids: list[int]) -> list[psutil.Process]:
    import psutil

    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return out


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


_LANG_EXE = {"python": re.compile(r"(^|/)python[0-9.]*$|(^|/)uvicorn$|(^|/)gunicorn$")}


def _pick(pids: list[int], language: str | None, pattern: str | None, label: str) -> Target:
    """The process in a container to sample: by pattern, else the first of the language, else PID 1's."""
    if pattern:
        t = by_pattern(pattern, within=pids)
        return Target(t.pid, t.cmdline, label, container=label.removeprefix("container "))
    import psutil

    if language in _LANG_EXE:
        rx = _LANG_EXE[language]
        for proc in _procs(pids):
            try:
                exe = proc.exe() or (proc.cmdline() or [""])[0]
            except psutil.Error:
                continue
            if rx.search(exe):
                return Target(
                    proc.pid, _cmdline(proc), label, container=label.removeprefix("container ")
                )
    t = by_pid(pids[0])
    return Target(t.pid, t.cmdline, label, container=label.removeprefix("container "))


def by_container(name: str, *, language: str | None = None, pattern: str | None = None) -> Target:
    """A container's process, as a host PID, found through the Docker Engine API."""
    from ops.engine import EngineError, NotFound, connect

    try:
        with connect() as engine:
            info = engine.inspect(name)
    except NotFound:
        raise TargetError(
            f"no container named {shown(name)} (docker ps lists the running ones)"
        ) from None
    except EngineError as exc:
        raise TargetUnreachable(f"cannot ask about container {shown(name)}: {exc}") from None
    state = info.get("State") or {}
    pid = int(state.get("Pid") or 0)
    cname = str(info.get("Name", name)).lstrip("/")
    if not state.get("Running") or pid <= 0:
        raise TargetError(f"container {cname} is not running ({state.get('Status', 'unknown')})")
    pids = _tree(pid)
    if not pids:
        raise TargetError(
            f"container {cname}'s PID {pid} is not visible here; run vots-ops on the Docker host, "
            "in the host's PID namespace"
        )
    return _pick(pids, language, pattern, f"container {cname}")


def by_service(
    service: str, project: str, *, language: str | None = None, pattern: str | None = None
) -> list[Target]:
    """Every running replica of a stack service (Compose labels), one target each."""
    from ops.engine import EngineError, connect

    try:
        with connect() as engine:
            listed = engine.containers()
    except EngineError as exc:
        raise TargetUnreachable(f"cannot list the containers: {exc}") from None
    names = sorted(
        str((c.get("Names") or ["?"])[0]).lstrip("/")
        for c in listed
        if (c.get("Labels") or {}).get("com.docker.compose.service") == service
        and (c.get("Labels") or {}).get("com.docker.compose.project") == project
    )
    if not names:
        raise TargetError(
            f"no running container of service {shown(service)} in project {shown(project)} "
            "(is the stack up? docker-compose ps)"
        )
    return [by_container(n, language=language, pattern=pattern) for n in names]
