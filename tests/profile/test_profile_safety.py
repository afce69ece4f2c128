"""`vots-ops profile` never outlives its caller and never guesses silently.

The targets are Python processes this file starts; the profiler is the real
py-spy. vots-ops is killed (SIGKILL: what the OOM killer does) and hung up on
(SIGHUP: a dropped ssh session) while py-spy samples with ``--blocking``,
the mode that pauses the target for every sample: afterwards no py-spy may be
left and the target must be running, not stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ops.profile.model import Profile, parse_folded
from tests.profile.test_profile_python import _sampler_running, _start, alpha, program
from tests.support.cli import Cli, signal_midway, wait_for
from tests.support.processes import stop_process

__all__ = ["alpha", "program"]  # fixtures used here

IDLE = """\
import time
print("ready", flush=True)
while True:
    time.sleep(3600)  # off the CPU the whole run
"""


def _state(pid: int) -> str:
    """The process state letter of /proc/PID/stat ('T': stopped, 't': traced-stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _running_after(pid: int, seconds: float = 1.0) -> list[str]:
    """The states seen over ``seconds``: a target paused by a leftover sampler shows 't' or 'T'."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(_state(pid))
        time.sleep(0.02)
    return seen


def _profilers() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if p.info["name"] in ("py-spy", "perf") or (cmd and Path(cmd[0]).name == "py-spy"):
            out.append(p)
    return out


def _blocking_run(cli: Cli, target: int, runs: Path) -> subprocess.Popen[str]:
    return cli.start(
        "profile", "--pid", str(target), "--blocking", "--duration", "60s",
        "--format", "json", "--out", str(runs),
    )  # fmt: skip


@pytest.mark.slow
def test_sigkill_takes_the_profiler_with_it_and_the_next_run_sweeps_its_partial(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = _blocking_run(cli, alpha.pid, runs)
    wait_for(_sampler_running(proc, 1.0), timeout=60, what="py-spy to sample", proc=proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "py-spy is not running"
    proc.kill()
    proc.communicate(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"the profiler outlived vots-ops: {alive}"
    states = _running_after(alpha.pid)
    assert not {"T", "t"} & set(states), f"the target is stopped: {states}"
    assert alpha.poll() is None
    left = list(runs.glob(".*.partial-*"))
    assert left, "a SIGKILLed run leaves its hidden staging directory (the case to sweep)"

    done = cli.run(
        "profile", "--pid", str(alpha.pid), "--duration", "1", "--format", "json",
        "--out", str(runs), timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not list(runs.glob(".*")), "the stale partial directory was not swept"
    assert len(list(runs.iterdir())) == 1


@pytest.mark.slow
def test_sigkill_takes_perf_with_it(cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path) -> None:
    from ops.profile.perf import perf_available

    reason = perf_available()
    if reason is not None:
        pytest.fail(f"perf cannot sample here: {reason}", pytrace=False)
    proc = cli.start(
        "profile", "--pid", str(alpha.pid), "--profiler", "perf", "--duration", "60s",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    wait_for(_sampler_running(proc, 1.0), timeout=60, what="perf to record", proc=proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any(c.name() == "perf" for c in children), children
    proc.kill()
    proc.communicate(timeout=30)
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"perf outlived vots-ops: {alive}"
    states = _running_after(alpha.pid)
    assert not {"T", "t"} & set(states), f"the target is stopped: {states}"


def test_a_partial_directory_a_running_profile_holds_is_not_swept(tmp_path: Path) -> None:
    """Two runs at once: the sweep of one must not take the other's directory."""
    import fcntl

    from ops.profile import LOCK, sweep_partials

    held = tmp_path / ".agent-20261202T140000Z.partial-abc"
    held.mkdir()
    stale = tmp_path / ".agent-20261202T130000Z.partial-def"
    stale.mkdir()
    (stale / LOCK).write_text("1\n")
    unlocked_young = tmp_path / ".rag-20261202T140000Z.partial-ghi"
    unlocked_young.mkdir()  # no lock file yet: only its age would condemn it
    result = tmp_path / "agent-20261202T120000Z"
    result.mkdir()
    with (held / LOCK).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        gone = sweep_partials(tmp_path)
    assert gone == [stale]
    assert held.exists() and unlocked_young.exists() and result.exists()


@pytest.mark.slow
def test_sighup_stops_sampling_like_sigterm_and_the_target_runs_on(
    cli: Cli, alpha: subprocess.Popen[str], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    proc = _blocking_run(cli, alpha.pid, runs)
    out, err, children = signal_midway(
        proc, signal.SIGHUP, timeout=60,
        when=_sampler_running(proc, 2.0), what="py-spy to sample for 2 s",
    )  # fmt: skip
    assert children, "py-spy is not running"
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"the profiler kept running: {alive}"
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["meta"]["interrupted"] is True and result["samples"] > 0, (result["meta"], err)
    assert result["duration_s"] < 60
    states = _running_after(alpha.pid)
    assert not {"T", "t"} & set(states), f"the target is stopped: {states}"
    assert not list(runs.glob(".*")), "staging left behind"


def test_native_with_nonblocking_is_refused(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("profile", "--pid", str(os.getpid()), "--native", "--nonblocking")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "native and non-blocking" in lines[0]
    assert "--no-native" in lines[0] and "--blocking" in lines[0]
    # the same pair in a recipe
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "both.yaml").write_text(
        "target: {match: nothing-matches-this}\nlanguage: python\n"
        "options: {native: true, blocking: false}\n"
    )
    done = cli.run("profile", "both", "--recipes", str(recipes))
    assert done.returncode == 2 and "native and non-blocking" in done.stderr, done.stderr


@pytest.fixture
def idle(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    script = tmp_path / "idle_target.py"
    script.write_text(IDLE)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield proc
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_a_profile_without_samples_names_the_likely_cause_and_exits_1(
    cli: Cli, idle: subprocess.Popen[str], tmp_path: Path
) -> None:
    done = cli.run(
        "profile", "--pid", str(idle.pid), "--duration", "2", "--out", str(tmp_path / "runs")
    )
    assert done.returncode == 1, done.stderr
    assert "no samples of pid" in done.stderr and "idle" in done.stderr
    assert "--idle" in done.stderr  # the switch that would count the waiting threads
    done = cli.run(
        "profile", "--pid", str(idle.pid), "--duration", "2", "--format", "json",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["samples"] == 0
    assert "idle" in done.stderr


def _set_last_pid(pid: int) -> bool:
    try:
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid))
    except OSError:
        return False
    return True


def _take_pid(pid: int) -> subprocess.Popen[bytes] | None:
    """A new process with PID ``pid`` (free now): the kernel gives the one after ns_last_pid."""
    for _ in range(50):
        if not _set_last_pid(pid - 1):
            return None
        new = subprocess.Popen(["sleep", "60"])
        if new.pid == pid:
            return new
        new.kill()
        new.wait()
    return None


@pytest.mark.slow
def test_a_pid_reused_during_sampling_is_noticed(cli: Cli, program: Path, tmp_path: Path) -> None:
    if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("PID reuse is produced through kernel.ns_last_pid, which needs root")
    target = _start(program, "alpha")
    proc = cli.start(
        "profile", "--pid", str(target.pid), "--duration", "5", "--format", "json",
        "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    new: subprocess.Popen[bytes] | None = None
    try:
        wait_for(_sampler_running(proc, 1.0), timeout=60, what="py-spy to sample", proc=proc)
        # vots-ops is held still while the target dies and its PID is handed out
        # again, so that it looks only once the PID is someone else's.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            target.kill()
            target.wait()
            new = _take_pid(target.pid)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        if new is None:
            proc.kill()
            pytest.skip("could not hand the PID to a new process (ns_last_pid not writable here)")
        out, err = proc.communicate(timeout=90)
    finally:
        stop_process(target)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if new is not None:
            new.kill()
            new.wait()
    assert proc.returncode in (0, 1), err
    result = json.loads(out)
    assert result["meta"]["pid_reused"] is True
    assert result["meta"]["target_exited"] is True


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs, filled up: a real full disk."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount(8)")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        with (mnt / "filler").open("wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_named_as_such(
    cli: Cli, alpha: subprocess.Popen[str], full_disk: Path
) -> None:
    runs = full_disk / "runs"
    runs.mkdir()
    done = cli.run("profile", "--pid", str(alpha.pid), "--duration", "2", "--out", str(runs))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "the disk is full" in lines[0] and "--out" in lines[0]
    assert "Traceback" not in done.stderr
    assert not list(runs.iterdir()), "a half-written run was left"


NATIVE_FOLDED = """\
<module> (prog.py:1);zlib_compress (zlibmodule.c.h:64);zlib_compress_impl (zlibmodule.c:374);deflate (libz.so.1) 5
<module> (prog.py:1);zlib_compress (zlibmodule.c.h:64);zlib_compress_impl (zlibmodule.c:380);deflate (libz.so.1) 3
<module> (prog.py:1);zlib_compress (zlibmodule.c.h:64);zlib_compress_impl (zlibmodule.c:391) 2
<module> (prog.py:1);zlib_compress (zlibmodule.c.h:64);deflate (libz.so.1);0x7f61240af27c (libz.so.1) 1
<module> (prog.py:1);zlib_compress (zlibmodule.c.h:64);deflate (libz.so.1);0x7f61240af297 (libz.so.1) 1
"""


def _native(native: bool) -> Profile:
    return Profile(
        stacks=parse_folded(NATIVE_FOLDED),
        target="pid 1",
        language="python",
        backend="py-spy record",
        duration_s=1.0,
        meta={"native": native},
    )


def test_native_frames_are_grouped_by_function_and_the_folded_output_keeps_lines() -> None:
    p = _native(True)
    rows = {r["function"]: r for r in p.top(20)}
    assert "zlib_compress_impl (zlibmodule.c)" in rows
    assert not any(":374" in f or ":380" in f for f in rows)
    impl = rows["zlib_compress_impl (zlibmodule.c)"]
    assert impl["self"] == 2 and impl["total"] == 10
    assert rows["?? (libz.so.1)"]["self"] == 2  # unsymbolized addresses, by library
    assert rows["deflate (libz.so.1)"]["self"] == 8
    folded = p.folded()
    assert "zlib_compress_impl (zlibmodule.c:374)" in folded
    assert "zlib_compress_impl (zlibmodule.c:380)" in folded
    # without --native the frames are what the profiler said
    assert "zlib_compress_impl (zlibmodule.c:374)" in {r["function"] for r in _native(False).top()}


def test_list_shows_the_recipes(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("profile", "--list", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed: dict[str, Any] = json.loads(done.stdout)["recipes"]
    shipped = {p.stem for p in (Path(__file__).parents[2] / "profiles").glob("*.yaml")}
    assert set(listed) == shipped
    assert listed["agent"]["target"]["service"] == "agent"
    table = cli.run("profile", "--list")
    assert table.returncode == 0 and "agent" in table.stdout and "go-service" in table.stdout
    refused = cli.run("profile", "--list", "--pid", "3")
    assert refused.returncode == 2 and "--pid does nothing with --list" in refused.stderr


ZLIB = """\
import os, zlib
data = os.urandom(200000)
print("ready", flush=True)
while True:
    zlib.compress(data, 9)
"""


@pytest.mark.slow
def test_native_frames_of_a_real_c_extension_are_one_row_per_function(
    cli: Cli, tmp_path: Path
) -> None:
    script = tmp_path / "zlib_target.py"
    script.write_text(ZLIB)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        done = cli.run(
            "profile", "--pid", str(proc.pid), "--native", "--duration", "2", "--top", "100",
            "--format", "json", "--out", str(tmp_path / "runs"),
        )  # fmt: skip
    finally:
        stop_process(proc)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    functions = [r["function"] for r in result["top"]]
    assert len(functions) == len(set(functions))
    assert not [f for f in functions if re.search(r":\d+\)$", f)], functions
    assert any(f.startswith("zlib_compress") for f in functions), functions
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert re.search(
        r"zlib_compress\w* \(zlibmodule\.c[.h]*:\d+\)", (run_dir / "profile.folded").read_text()
    )
