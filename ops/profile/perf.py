"""Linux perf as a profile backend: sample a running process, fold ``perf script`` output.

For native programs (Rust, C, Go) that have no sampler of their own. ``perf
record`` attaches to the pid for the duration of a ``sleep`` it runs itself,
then ``perf script`` prints every sample's call chain and this module folds
them into the shared :class:`~ops.profile.model.Profile`, the way Brendan
Gregg's ``stackcollapse-perf.pl`` does.

Choices, each measured on the test VM (perf 6.1, 2 vCPUs):

* ``-e cpu-clock``: a software timer, so it works on VMs whose hardware
  counters are ``<not supported>`` (``cycles``, ``instructions``).
* ``--call-graph dwarf``: Rust release builds, like most distribution
  binaries, have no frame pointers; with ``-g`` (frame pointers) a sample is
  just ``hot_loop`` with no callers. DWARF copies 8 KiB of stack per sample
  (~0.8 MB/s per busy thread at 99 Hz) and works from ``.eh_frame`` alone.
  ``call_graph="fp"`` is there for programs built with frame pointers (Go).
* ``--no-inline`` for ``perf script``: inlined helpers (``black_box``,
  ``Range::next``) would otherwise become the leaf and split a function's
  self time between them; resolving them also takes perf script 2.5 times as long.
* ``--no-bpf-event`` saves perf ~0.9 s of start-up reading BPF programs, and
  ``--no-buildid-cache`` keeps perf from copying every binary it saw into
  ``~/.debug``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ops.errors import ExternalToolError, OpsError, OutputError, TargetError, ToolMissing
from ops.proc import INSTALL_HINTS, run, supervise, which
from ops.profile.model import Profile, ProfileMeta, Stack

PERF_HINT = INSTALL_HINTS["perf"]
EVENT = "cpu-clock"
# pid/tid (not the default tid alone) so samples can be kept to the target process.
SCRIPT_FIELDS = "comm,pid,tid,time,event,ip,sym,symoff,dso"
RECORD_GRACE_S = 30  # perf's start-up and writing the file, beyond the sampling itself
STOP_GRACE_S = 30  # after a Ctrl-C, for perf to finish the file
TICK_S = 0.25  # how often on_tick and stop are looked at
SCRIPT_TIMEOUT_S = 300  # DWARF unwinding of a long, many-threaded recording is slow
PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")
CallGraph = Literal["dwarf", "fp"]


def perf_available() -> str | None:
    """None when perf can sample here, else one line saying why not and what to do."""
    try:
        perf = _perf()
    except ToolMissing as exc:
        return str(exc)
    if not PARANOID.exists():
        return "this kernel has no perf events (no /proc/sys/kernel/perf_event_paranoid)"
    try:
        proc = run([perf, "stat", "-e", EVENT, "--", "true"], timeout=30)
    except OpsError as exc:
        return str(exc)
    output = proc.stderr + proc.stdout
    if proc.returncode == 0 and "<not supported>" not in output:
        return None
    return explain_failure(output)


def perf_record(
    pid: int,
    *,
    duration_s: float,
    rate_hz: float = 99,
    target: str,
    language: str = "rust",
    workdir: Path,
    call_graph: CallGraph = "dwarf",
    on_tick: Callable[[float], None] | None = None,
    stop: threading.Event | None = None,
) -> Profile:
    """Sample process ``pid`` (all its threads) for ``duration_s`` seconds at ``rate_hz``.

    ``perf.data`` and perf's own output (``perf-record.log``) stay in
    ``workdir``. A Ctrl-C (KeyboardInterrupt) or ``stop`` being set (for a
    sampler in a thread, which Ctrl-C does not reach) stops the recording
    early: perf gets SIGINT, finishes the file, and what it holds is folded
    and returned with ``meta["interrupted"] = True``; a second Ctrl-C kills
    perf and re-raises. A target that exits while being sampled gives the
    samples taken until then, with ``meta["target_exited"] = True``.
    ``on_tick`` gets the seconds elapsed, about four times a second.
    """
    if duration_s <= 0 or rate_hz <= 0:
        raise OpsError(f"duration and rate must be positive (got {duration_s:g}s, {rate_hz:g} Hz)")
    _check_pid(pid)
    perf = _perf()
    data = workdir.resolve() / "perf.data"
    log_path = workdir / "perf-record.log"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        data.unlink(missing_ok=True)  # else perf keeps the old one as perf.data.old
        log = log_path.open("wb")
    except OSError as exc:
        raise OutputError(f"cannot write the profile to {workdir}: {exc.strerror}") from None
    argv = record_argv(
        perf, pid, duration_s=duration_s, rate_hz=rate_hz, output=data, call_graph=call_graph
    )
    from ops.profile.target import start_time

    born = start_time(pid)
    started = time.time()
    with log:
        # perf finishes its file on SIGINT (and then re-raises it).
        done = supervise(
            argv,
            name="perf record",
            timeout_s=duration_s + RECORD_GRACE_S,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            on_tick=on_tick,
            stop=stop,
            grace_s=STOP_GRACE_S,
            tick_s=TICK_S,
            log=log_path,
            die_with_parent=True,
        )
    interrupted, elapsed = done.interrupted, done.elapsed_s
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    now = start_time(pid)
    reused = born is not None and now is not None and now != born
    target_exited = reused or not _alive(pid)
    # perf re-raises the SIGINT it was stopped with, after writing the file.
    ok = done.returncode == 0 or (interrupted and done.returncode == -signal.SIGINT)
    if not ok and not target_exited:
        raise ExternalToolError(
            f"perf record failed for pid {pid}: {explain_failure(log_text, pid=pid)}"
        )
    has_data = data.exists() and data.stat().st_size > 0
    if not has_data and not target_exited:
        raise ExternalToolError(
            f"perf record wrote no data for pid {pid}: {explain_failure(log_text)}"
        )
    folded = Folded({})
    if has_data:
        try:
            folded = _script(perf, data, pid)
        except OpsError:
            if not target_exited:
                raise  # else perf left a file without samples behind
    if target_exited and not folded.stacks:
        raise TargetError(f"pid {pid} exited before perf recorded any samples")
    cut_short = interrupted or target_exited  # then the wall time is the better measure
    meta: ProfileMeta = {
        "pid": pid,
        "comm": folded.threads.get(pid) or next(iter(folded.threads.values()), None),
        "threads_sampled": len(folded.threads),
        "event": folded.event or EVENT,
        "call_graph": call_graph,
        "interrupted": interrupted,
        "target_exited": target_exited,
        "pid_reused": reused,
        "perf_data": str(data),
    }
    if folded.other_samples:
        meta["other_pid_samples"] = folded.other_samples
    return Profile(
        stacks=folded.stacks,
        target=target,
        language=language,
        backend="perf",
        duration_s=round(min(elapsed, duration_s) if cut_short else float(duration_s), 3),
        rate_hz=rate_hz,
        weight="samples",
        started=started,
        meta=meta,
    )


def record_argv(
    perf: str,
    pid: int,
    *,
    duration_s: float,
    rate_hz: float,
    output: Path,
    call_graph: CallGraph = "dwarf",
) -> list[str]:
    """The ``perf record`` command line: sample ``pid`` while perf's own ``sleep`` runs.

    The sleep dies with perf where ``setpriv`` can say so (util-linux), so a
    SIGKILLed vots-ops (whose perf the kernel then kills) leaves nothing behind.
    """
    import shutil

    setpriv = shutil.which("setpriv")
    tie = [setpriv, "--pdeathsig", "KILL"] if setpriv else []
    return [
        perf,
        "record",
        "-F",
        str(max(1, round(rate_hz))),
        "--call-graph",
        call_graph,
        "-e",
        EVENT,
        "-p",
        str(pid),
        "-o",
        str(output),
        "--no-buildid-cache",
        "--no-bpf-event",
        "--",
        *tie,
        "sleep",
        f"{duration_s:g}",
    ]


@dataclass
class Folded:
    """``perf script`` text folded: stacks (root → leaf) and what was seen on the way."""

    stacks: dict[Stack, int]
    threads: dict[int, str] = field(default_factory=dict)  # tid -> comm, of kept samples
    other_samples: int = 0  # samples of other processes, left out
    event: str | None = None


# "hot 123/125  4567.890123: cpu-clock:" -- comm (may hold spaces, may be right-aligned),
# pid/tid or tid alone, [cpu], time, period, event, and the one frame when there is no chain.
_HEADER = re.compile(
    r"^\s*(?P<comm>\S.*?)\s+(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)\s+(?:\[\d+\]\s+)?"
    r"\d+\.\d+:\s+(?:\d+\s+)?(?P<event>[\w:.-]+):(?:\s+(?P<rest>.*))?$"
)
# "  1405f hot::hot_loop+0x4f (/path/hot)"; the DSO may hold one "( )" of its own ("(deleted)").
_FRAME = re.compile(
    r"^\s*(?P<ip>[0-9a-fA-F]+)\s+(?P<sym>.*?)(?:\s+\((?P<dso>[^()]*(?:\([^()]*\))?[^()]*)\))?\s*$"
)


def fold_perf_script(text: str, *, pid: int | None = None) -> Folded:
    """Fold ``perf script`` output into stacks; with ``pid``, only that process's samples.

    Each sample is a header line (which needs its time field, as perf prints
    by default) then its call chain, leaf first, one frame a line, and a blank
    line. Filtering needs the ``pid/tid`` form of the header (``-F
    pid,tid,...``, as :func:`perf_record` asks for); a header with a tid alone
    is kept.
    """
    stacks: Counter[Stack] = Counter()
    threads: dict[int, str] = {}
    other = 0
    event: str | None = None
    frames: list[str] | None = None  # None: not inside a kept sample

    def flush() -> None:
        if frames is not None:
            stacks[tuple(reversed(frames)) or ("[unknown]",)] += 1

    for line in text.splitlines():
        if not line.strip():
            flush()
            frames = None
        elif line.startswith("#"):
            continue
        elif m := _HEADER.match(line):
            flush()
            frames = None
            sample_pid = int(m["pid"]) if m["pid"] is not None else None
            if pid is not None and sample_pid is not None and sample_pid != pid:
                other += 1
                continue
            frames = []
            threads.setdefault(int(m["tid"]), m["comm"])
            event = event or m["event"]
            rest = (m["rest"] or "").strip()
            if rest and (fm := _FRAME.match(rest)):  # no call chain: the one frame on this line
                frames.append(frame_name(fm["sym"], fm["dso"]))
        elif frames is not None and (fm := _FRAME.match(line)):
            frames.append(frame_name(fm["sym"], fm["dso"]))
    flush()
    return Folded(dict(stacks), threads, other, event)


_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")
_SYMVER = re.compile(r"@@?[A-Z][A-Z0-9_]*_[\d.]+$")  # clock_gettime@@GLIBC_2.17
_LLVM = re.compile(r"\.llvm\.\d+$")


def frame_name(sym: str, dso: str | None = None) -> str:
    """One frame's name: the symbol without offset, version or hash; ``[libc.so.6]`` if unknown."""
    sym = _OFFSET.sub("", sym.strip())
    if not sym or sym == "[unknown]":
        if dso and dso not in ("[unknown]", "unknown", "inlined"):
            base = os.path.basename(dso.split(" (")[0]) or dso
            return base if base.startswith("[") else f"[{base}]"
        return "[unknown]"
    sym = _LLVM.sub("", _SYMVER.sub("", sym))
    return demangle_rust(sym)


def demangle_rust(sym: str) -> str:
    """What perf's Rust demangling leaves undone: the ``$u<hex>$`` of a non-ASCII name.

    ``perf script`` demangles both of Rust's manglings (tests/profile/test_perf.py
    records a real program built with each): v0 whole, generics and non-ASCII
    names included, and legacy with its hash removed and ``$LT$``-style escapes
    turned into characters -- except any other character, which stays escaped
    (``shapes::größe`` comes out as ``shapes::gr$uf6$$udf$e``). Nothing else is
    changed; an escape that names no character is left as it is.
    """
    if "$u" not in sym:
        return sym
    return _RUST_ESCAPE.sub(_unescape, sym)


_RUST_ESCAPE = re.compile(r"\$u([0-9a-f]{1,6})\$")


def _unescape(m: re.Match[str]) -> str:
    code = int(m[1], 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return m[0]
    return chr(code)


def explain_failure(output: str, *, pid: int | None = None) -> str:
    """perf's many-line complaint as one line naming the cause and what to do."""
    low = output.lower()
    if pid is not None and ("no such process" in low or "couldn't create thread" in low):
        return f"no process with pid {pid}"
    if "function not implemented" in low or "returned with 38" in low:
        return (
            "perf_event_open is not implemented here: a kernel without perf events, "
            "or a container sandbox (such as gVisor) that does not provide the system call"
        )
    if any(s in low for s in _REFUSED):
        return _refused(pid)
    if "error mapping pages" in low:  # the refusal text above mentions mlock_kb too
        return (
            "perf's buffers exceed kernel.perf_event_mlock_kb for this user; "
            "use a lower rate, run as root, or raise that limit"
        )
    if "not supported" in low:
        return f"the {EVENT} event is not supported here"
    if "perf not found for kernel" in low:  # Ubuntu's /usr/bin/perf wrapper
        return f"perf does not match this kernel; install linux-tools-{os.uname().release}"
    lines = [
        ln.strip()
        for ln in output.splitlines()
        if ln.strip()
        and not ln.startswith("[ perf record:")
        and "failed to write feature" not in ln
    ]
    return lines[-1] if lines else "perf gave no reason"


_REFUSED = (
    "access to performance monitoring",
    "no permission to enable",
    "operation not permitted",
)


def _refused(pid: int | None) -> str:
    """Which of the three gates said no: another user's process, the sysctl, or a policy."""
    euid = os.geteuid()
    owner = _owner(pid) if pid is not None else None
    paranoid = _paranoid()
    if owner is not None and euid != 0 and owner != euid:
        return (
            f"pid {pid} belongs to uid {owner} and this is uid {euid}; perf may sample only "
            "your own processes (run as root or as that user, or grant CAP_PERFMON and "
            "CAP_SYS_PTRACE)"
        )
    if _privileged() or (paranoid is not None and paranoid <= 2):
        # The kernel itself would allow this (user-space sampling of one's own process):
        # what says no is a seccomp or LSM policy, typically a container's.
        return (
            "perf_event_open is blocked by a seccomp or security policy, not by "
            f"kernel.perf_event_paranoid ({paranoid}); in a container allow it "
            "(docker run --cap-add PERFMON, or a seccomp profile that permits perf_event_open)"
        )
    return (
        f"kernel.perf_event_paranoid is {paranoid}, too high for a user without CAP_PERFMON; "
        "lower it (sysctl kernel.perf_event_paranoid=2), run as root, or grant CAP_PERFMON"
    )


def _script(perf: str, data: Path, pid: int) -> Folded:
    argv = [perf, "script", "-i", str(data), "-F", SCRIPT_FIELDS, "--no-inline"]
    proc = run(argv, timeout=SCRIPT_TIMEOUT_S, cwd=data.parent)
    if proc.returncode != 0:
        raise ExternalToolError(f"perf script failed on {data}: {explain_failure(proc.stderr)}")
    return fold_perf_script(proc.stdout, pid=pid)


def _perf() -> str:
    try:
        return which("perf")
    except ToolMissing:
        raise ToolMissing("perf", PERF_HINT) from None


def _check_pid(pid: int) -> None:
    if pid <= 0:
        raise TargetError(f"not a process id: {pid}")
    if not _alive(pid):
        raise TargetError(f"no process with pid {pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's; perf decides whether we may sample it
    # A zombie answers kill(0) but has nothing left to sample.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    return True


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _paranoid() -> int | None:
    try:
        return int(PARANOID.read_text().strip())
    except (OSError, ValueError):
        return None


def _privileged() -> bool:
    """CAP_PERFMON (38) or CAP_SYS_ADMIN (21) in this process's effective set."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return os.geteuid() == 0
    m = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    caps = int(m[1], 16) if m else 0
    return bool(caps & (1 << 38) or caps & (1 << 21))
