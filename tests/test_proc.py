"""ops.proc.supervise with real child processes: deadline, graceful stop, group kill, signals."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from ops.errors import ExternalToolError
from ops.proc import supervise

CHILD = """\
import signal, sys, time
def stop(*_):
    print("graceful", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""

SIGINT_BIT = 1 << (signal.SIGINT - 1)
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def _gone(pid: int, timeout: float = 30) -> bool:
    """Whether ``pid`` is gone (reaped, or a zombie waiting for init) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_past_its_deadline_the_whole_group_is_killed(tmp_path: Path) -> None:
    """The child and what it forked both go; the error is exit 3, naming the tool."""
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; trap '' INT TERM; sleep 300"
    with pytest.raises(ExternalToolError, match=r"^sh did not finish within \d+s; stopped it") as e:
        supervise(
            ["sh", "-c", script], name="sh", timeout_s=1, stop_signal=signal.SIGTERM, grace_s=1
        )
    assert e.value.exit_code == 3
    grandchild = int(pidfile.read_text())
    assert _gone(grandchild), "the grandchild outlived the group kill"


@pytest.mark.parametrize("code", [0, 2])
def test_what_the_child_started_goes_when_the_child_exits(tmp_path: Path, code: int) -> None:
    """A Locust master that exits on its own (an error, or done) must not leave its
    workers behind: the rest of its group is stopped, by SIGKILL if it ignores the stop."""
    pidfile = tmp_path / "grandchild.pid"
    script = f"(trap '' INT TERM; exec sleep 300) & echo $! > {pidfile}; exit {code}"
    finished = supervise(["sh", "-c", script], name="sh", timeout_s=60, grace_s=1)
    assert finished.returncode == code
    grandchild = int(pidfile.read_text())
    assert _gone(grandchild), "the grandchild outlived its parent's supervised run"


def _child(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script)], tmp_path / "child.out"


def test_a_stop_event_asks_the_child_to_stop_and_keeps_its_output(tmp_path: Path) -> None:
    argv, out = _child(tmp_path)
    stop = threading.Event()

    def tick(_elapsed: float) -> None:
        if out.exists() and "ready" in out.read_text():
            stop.set()

    with out.open("wb") as f:
        done = supervise(argv, name="child", timeout_s=120, stdout=f, on_tick=tick, stop=stop)
    assert done.interrupted and done.returncode == 0
    assert out.read_text().split() == ["ready", "graceful"]


def test_sigterm_to_vots_ops_becomes_a_graceful_stop_of_the_child(tmp_path: Path) -> None:
    """What systemd or timeout(1) sends: the child gets SIGINT and writes, nothing is raised."""
    argv, out = _child(tmp_path)
    sent = []

    def tick(_elapsed: float) -> None:
        if not sent and out.exists() and "ready" in out.read_text():
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with out.open("wb") as f:
        done = supervise(argv, name="child", timeout_s=120, stdout=f, on_tick=tick)
    assert done.interrupted and done.returncode == 0
    assert out.read_text().split() == ["ready", "graceful"]
    assert signal.getsignal(signal.SIGTERM) is before, "the handler was not given back"


def test_the_child_starts_with_sigint_and_sigterm_at_their_defaults(tmp_path: Path) -> None:
    """A parent started with SIGINT and SIGTERM ignored (a script's background job,
    nohup) would hand that on; the child must still be stoppable by them."""
    out = tmp_path / "status"
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with out.open("wb") as f:
            supervise(["cat", "/proc/self/status"], name="cat", timeout_s=60, stdout=f)
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
    (line,) = [ln for ln in out.read_text().splitlines() if ln.startswith("SigIgn:")]
    ignored = int(line.split()[1], 16)
    assert not ignored & SIGINT_BIT and not ignored & SIGTERM_BIT, line
