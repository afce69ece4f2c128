"""The one way to run external programs: found up front, argument lists, timeouts.

``run()`` is for a tool that answers and exits (nginx -t, promtool, perf
script). ``supervise()`` is for one that runs for a while and must be stopped
well (py-spy, perf record, Locust): it starts the child in its own session (a
terminal's Ctrl-C reaches only vots-ops, which decides what the child gets),
watches a deadline, turns Ctrl-C, SIGTERM and a ``stop`` event into one
graceful stop (so the child still writes what it has), and ends with a kill
of the child's whole process group if that does not work. Both signals are
caught while it runs, so the child starts with SIGINT and SIGTERM at their
defaults even when vots-ops itself was started with them ignored (a
background job of a script, ``nohup``): a graceful stop always reaches it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ops.errors import ExternalToolError, ToolMissing

INSTALL_HINTS = {
    "nginx": "install it with: apt-get install nginx-light libnginx-mod-http-brotli-filter libnginx-mod-http-brotli-static",
    "promtool": "install it with: apt-get install prometheus",
    "docker-compose": "install it with: apt-get install docker-compose",
    "docker": "install the Docker engine (apt-get install docker.io)",
    "openssl": "install it with: apt-get install openssl",
    "check-jsonschema": "install it with: pip install 'vots-ops[verify]'",
    "wrk": "install it with: apt-get install wrk",
    "crontab": "install it with: apt-get install cron (or use --systemd)",
    "perf": "install it with: apt-get install linux-perf",
    "go": "install it with: apt-get install golang-go",
    "cargo": "install it with: apt-get install cargo (or rustup)",
}


def which(tool: str) -> str:
    """Absolute path of ``tool`` or ToolMissing with an install hint."""
    found = shutil.which(tool)
    if not found:
        raise ToolMissing(tool, INSTALL_HINTS.get(tool, f"install {tool}"))
    return found


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never a shell string), capturing text output, with a timeout."""
    argv = [which(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    try:
        proc = subprocess.run(  # noqa: S603 - argument list, resolved executable
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExternalToolError(
            f"{Path(argv[0]).name} did not finish within {timeout:g}s"
        ) from None
    if check and proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip().splitlines()
        last = output[-1] if output else f"exit code {proc.returncode}"
        raise ExternalToolError(f"{Path(argv[0]).name} failed: {last}")
    return proc


FORWARDED = (signal.SIGINT, signal.SIGTERM)
#: Also SIGHUP (a dropped ssh session), for commands that stop on it like on SIGTERM.
WITH_HANGUP = (*FORWARDED, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


def parent_death_signal(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when the
    thread that started it ends (vots-ops SIGKILLed, OOM-killed): a profiler
    never outlives its caller. Linux only; elsewhere it does nothing."""
    import ctypes

    parent = os.getpid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _ignore(_signum: int, _frame: object) -> None:
    """A signal vots-ops was started with ignored stays ignored for vots-ops itself."""


@contextlib.contextmanager
def forward_signals(signals: Sequence[int] = FORWARDED) -> Iterator[None]:
    """SIGINT and SIGTERM (``signals``: also SIGHUP, :data:`WITH_HANGUP`) raise KeyboardInterrupt in the main thread while inside.

    systemd, timeout(1) and CI cancellations send SIGTERM: it then stops a
    child the same way as Ctrl-C, instead of leaving it running. A signal the
    process was started with ignored stays ignored here, but is caught rather
    than ignored, so children started inside begin with it at its default
    (a caught signal is reset by exec, an ignored one is inherited). Outside
    the main thread this does nothing (only the main thread may set handlers;
    a caller with sampler threads enters it in the main thread first).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig, old in previous.items():
        signal.signal(sig, _ignore if old in (signal.SIG_IGN, _ignore) else _interrupt)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    """``sig`` to the child's whole process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, grace_s: float = 10) -> None:
    """``sig`` to the group, then SIGKILL to the group if the child is still there after ``grace_s``."""
    if proc.poll() is None:
        signal_group(proc, sig)
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, signal.SIGKILL)  # also what the child forked, if it outlived it
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member that changed its user: still there
        return True
    return True


def stop_leftovers(pgid: int, sig: int = signal.SIGINT, grace_s: float = 5) -> None:
    """After a group's leader has exited: ``sig`` to what is left of the group
    (children it started and did not wait for), then SIGKILL after ``grace_s``."""
    if not _group_alive(pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class Finished:
    """How a supervised child ended: its exit status, and whether it was stopped early."""

    returncode: int
    interrupted: bool
    elapsed_s: float


def supervise(
    argv: Sequence[str],
    *,
    name: str,
    timeout_s: float,
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    stderr: IO[Any] | int | None = subprocess.STDOUT,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
    interrupt: Callable[[subprocess.Popen[bytes]], None] | None = None,
    stop_signal: int = signal.SIGINT,
    grace_s: float = 30,
    tick_s: float = 0.25,
    log: Path | None = None,
    die_with_parent: bool = False,
) -> Finished:
    """Run ``argv`` to its end, a graceful stop, or its deadline; never leave it running.

    ``interrupt`` asks the child to stop and write what it has (default:
    ``stop_signal`` to its group); it is called on the first Ctrl-C or SIGTERM,
    or when ``stop`` is set, and the child then has ``grace_s`` more seconds.
    A second Ctrl-C kills the group and re-raises. Past ``timeout_s`` the group
    gets ``stop_signal``, then SIGKILL, and ExternalToolError names the tool
    (and ``log``). ``on_tick`` gets the seconds elapsed about every ``tick_s``.
    ``die_with_parent``: the kernel SIGKILLs the child if vots-ops dies without
    stopping it (SIGKILL, the OOM killer), see :func:`parent_death_signal`.
    """
    ask = interrupt or (lambda p: signal_group(p, stop_signal))
    with forward_signals():
        started = time.monotonic()
        deadline = started + timeout_s
        proc = subprocess.Popen(  # noqa: S603 - argument list, resolved executable
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=parent_death_signal() if die_with_parent else None,
        )
        interrupted = False
        try:
            if on_start is not None:
                on_start(proc)
            while True:
                try:
                    try:
                        proc.wait(tick_s)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    # A Ctrl-C or SIGTERM may land anywhere in here (in on_tick too).
                    if on_tick is not None:
                        on_tick(time.monotonic() - started)
                    if stop is not None and stop.is_set() and not interrupted:
                        interrupted = True
                        ask(proc)
                        deadline = min(deadline, time.monotonic() + grace_s)
                    elif time.monotonic() > deadline:
                        stop_group(proc, stop_signal, min(grace_s, 10))
                        where = f" (log: {log})" if log is not None else ""
                        raise ExternalToolError(
                            f"{name} did not finish within {deadline - started:.0f}s; "
                            f"stopped it{where}"
                        )
                except KeyboardInterrupt:
                    if interrupted:  # a second Ctrl-C: stop now
                        stop_group(proc, signal.SIGKILL, 0)
                        raise
                    interrupted = True
                    ask(proc)
                    deadline = min(deadline, time.monotonic() + grace_s)
        finally:
            if proc.poll() is None:
                stop_group(proc, stop_signal)
            else:  # it ended: what it started (Locust's workers) goes with it
                stop_leftovers(proc.pid, stop_signal)
    return Finished(proc.returncode, interrupted, time.monotonic() - started)


def free_port() -> int:
    """A TCP port free on loopback right now (for servers the suite starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
