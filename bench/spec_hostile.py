"""Hostile spec files: the vots-ops loader against plain ``yaml.safe_load``.

Each input runs in a child process of its own (wall time; peak RSS as the
kernel's VmHWM of the child, polled while it runs and printed by it at the end): ``ops.stack.load_stack`` (what ``plan`` calls) against
``yaml.safe_load`` of the same file, which gets a timeout and an address-space
cap so a bomb cannot take the machine down. Goal: vots-ops refuses or accepts
every input within 1 s and 100 MB. Prints one row per input, then the ratio
as the last line.
Run: .venv/bin/python bench/spec_hostile.py [--timeout S] [--cap-mb MB]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.stack.hostile import alias_bomb, big_file, deep_nesting

OURS = """
import sys, time
from ops.errors import SpecError
from ops.stack import load_stack
start = time.perf_counter()
try:
    load_stack(sys.argv[1])
    print("accepted")
except SpecError as exc:
    print("refused: " + str(exc).split(": ", 1)[1][:70])
print(time.perf_counter() - start)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""
REFERENCE = """
import sys, time, yaml
start = time.perf_counter()
yaml.load(open(sys.argv[1], encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
print("loaded")
print(time.perf_counter() - start)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
"""


def _inputs() -> dict[str, str]:
    return {
        "alias bomb (7 levels)": alias_bomb(levels=7),
        "alias bomb (9 levels)": alias_bomb(levels=9),
        "50 MB file": big_file(50 * 1024 * 1024),
        "nesting 999 deep": deep_nesting(999),
        # The most work the caps allow: just under MAX_NODES values, all composed.
        "19,990 values": "services: [" + ", ".join(["x"] * 19_990) + "]\n",
        "bundled stack.yaml": (Path(__file__).resolve().parents[1] / "stack.yaml").read_text(),
    }


def _run(code: str, path: Path, timeout: float, cap_mb: int) -> tuple[float, float, str]:
    """(seconds of the load itself, peak RSS in MB, outcome) of one child.

    The load's own time excludes interpreter start and imports; a killed child
    counts its whole run."""

    def limit() -> None:
        cap = cap_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=limit,
        text=True,
    )
    deadline = start + timeout
    outcome = ""
    peak_kb = 0
    while True:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            break
        peak_kb = max(peak_kb, _hwm_kb(child.pid))
        if time.perf_counter() > deadline:
            child.send_signal(signal.SIGKILL)
            pid, status = os.waitpid(child.pid, 0)
            outcome = f"killed after {timeout:.0f} s timeout"
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    assert child.stdout is not None
    printed = child.stdout.read().split()
    child.stdout.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if printed and printed[-1].isdigit():
        peak_kb = max(peak_kb, int(printed.pop()))
        elapsed = float(printed.pop())
    if not outcome:
        outcome = " ".join(printed) or f"failed (exit {child.returncode}, {cap_mb} MB cap?)"
    return elapsed, peak_kb / 1024, outcome


def _hwm_kb(pid: int) -> int:
    """The child's peak resident set so far (0 once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=20.0, help="per reference run")
    parser.add_argument("--cap-mb", type=int, default=2048, help="address space per run")
    args = parser.parse_args()
    ours_total = ref_total = 0.0
    worst_time = worst_rss = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in _inputs().items():
            path = Path(tmp) / "stack.yaml"
            path.write_text(text, encoding="utf-8")
            size = len(text.encode())
            t_ours, rss_ours, out_ours = _run(OURS, path, args.timeout, args.cap_mb)
            t_ref, rss_ref, out_ref = _run(REFERENCE, path, args.timeout, args.cap_mb)
            ours_total += t_ours
            ref_total += t_ref
            worst_time, worst_rss = max(worst_time, t_ours), max(worst_rss, rss_ours)
            print(f"{name} ({size:,} bytes)")
            print(f"  vots-ops        {t_ours:8.3f} s {rss_ours:6.0f} MB  {out_ours}")
            print(f"  yaml.safe_load  {t_ref:8.3f} s {rss_ref:6.0f} MB  {out_ref}")
    print(
        f"vots-ops worst: load {worst_time:.3f} s, peak RSS {worst_rss:.0f} MB of the whole "
        "process (goal <= 1 s, 100 MB)"
    )
    print(
        f"ratio yaml.safe_load / vots-ops, total time over the inputs: "
        f"{ref_total / ours_total:.1f}x"
    )


if __name__ == "__main__":
    main()
