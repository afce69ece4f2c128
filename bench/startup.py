"""`vots-ops --help` start-up against bare `python -c pass`, interleaved in one run.

Goal: at most 5x. Prints both medians, then the ratio as the last line.
Run: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    exe = shutil.which("vots-ops", path=str(Path(sys.executable).parent)) or "vots-ops"
    project = [exe, "--help"]
    reference = [sys.executable, "-c", "pass"]
    for _ in range(3):  # warm the page cache
        _time(project)
        _time(reference)
    ours: list[float] = []
    ref: list[float] = []
    for _ in range(args.runs):
        ours.append(_time(project))
        ref.append(_time(reference))
    m_ours, m_ref = statistics.median(ours), statistics.median(ref)
    print(f"python -c pass   median {m_ref * 1000:7.1f} ms  (n={args.runs})")
    print(f"vots-ops --help  median {m_ours * 1000:7.1f} ms  (n={args.runs})")
    print(f"ratio vots-ops --help / python -c pass: {m_ours / m_ref:.2f}x (goal <= 5x)")


if __name__ == "__main__":
    main()
