"""One cron sample (`vots-ops report --quiet`) against glances, interleaved in one run.

Goal (the issue): one sample of host + containers in at most 0.15 s of wall time
and 35 MiB peak RSS, and at least 10x faster than
`glances --stdout-json cpu,mem,load,fs,network --stop-after 1`.

Each round runs, in a fresh process each and in alternating order:
  * `vots-ops report --quiet --db <tmp db>`, the real cron command;
  * `python -c "...take_sample(db)"`, the same library call without the CLI
    (what the command would cost if its imports were as lean as the sample);
  * glances with the command line above.
Wall time is measured around spawn and wait; CPU time (user + sys) and peak
RSS come from the child's own rusage (os.wait4). The bench process stays small
(it imports nothing of ops), because a child's ru_maxrss starts from the RSS of
the process it was forked from. The in-process cost of
`ops.report.sample.sample()` is measured in a child of its own.

With --containers N (default 20), N busybox containers (`sleep 600`, with
--cpus/--memory limits) run during the measurement and are always removed.
With --history N, the database first gets N samples one minute apart (the
anomaly check reads the last 6 h: 360 is a cron job's steady state).

Children run with a bytecode cache (PYTHONPYCACHEPREFIX in a temp dir, warmed
first), as an installed package has, even if PYTHONDONTWRITEBYTECODE is set
here; --no-bytecode-cache keeps the environment as it is.

Prints medians, then the ratios glances / vots-ops of wall time and, last, of CPU time.
Run: .venv/bin/python bench/report_sample.py [--containers N] [--rounds N] [--history N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GLANCES_ARGS = ["--stdout-json", "cpu,mem,load,fs,network", "--stop-after", "1"]
WALL_BUDGET_S = 0.15
RSS_BUDGET = 35 * 1024 * 1024
LABEL = "io.vots.bench.report-sample"

TAKE_SAMPLE = (
    "import sys\n"
    "from pathlib import Path\n"
    "from ops.report.run import take_sample\n"
    "take_sample(Path(sys.argv[1]))\n"
)
LIBRARY = """
import json, statistics, sys, time
t0 = time.perf_counter()
from ops.report.sample import sample
t1 = time.perf_counter()
first = sample()
t2 = time.perf_counter()
rest = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    sample()
    rest.append(time.perf_counter() - t)
hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({
    "import": t1 - t0, "first": t2 - t1, "median": statistics.median(rest), "n": len(rest),
    "hwm_kib": int(hwm), "containers": len(first["containers"]),
    "error": first["docker_error"], "heavy": sorted(
        {"docker", "psutil", "requests", "urllib3", "http.client", "ssl"} & set(sys.modules)),
}))
"""
SEED = """
import sys
from pathlib import Path
from ops.report.history import History
from ops.report.rates import rates as rates_between
from ops.report.run import _points
from ops.report.sample import sample

db, n = Path(sys.argv[1]), int(sys.argv[2])
with History(db) as history:
    for i in range(n):
        cur = sample()
        back = 60.0 * (n - i)  # one minute apart, the last one a minute ago
        cur["time"] -= back
        cur["mono"] -= back
        for c in cur["containers"]:
            if c.get("read_mono") is not None:
                c["read_mono"] -= back
        prev = history.previous(cur["host"]["hostname"])
        rates = rates_between(prev.raw if prev else None, cur)
        history.record(
            cur["time"], cur["host"]["hostname"], cur, list(_points(cur, rates)),
            boot_id=cur["host"]["boot_id"], mono=cur["mono"],
        )
"""


class Measure:
    """Wall, CPU (user + sys) and peak RSS of one child process."""

    def __init__(self, label: str, argv: list[str]) -> None:
        self.label, self.argv = label, argv
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.rss: list[int] = []

    def run(self, env: dict[str, str], record: bool = True) -> None:
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                sys.exit(f"{self.label} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        if record:
            self.wall.append(wall)
            self.cpu.append(usage.ru_utime + usage.ru_stime)
            self.rss.append(usage.ru_maxrss * 1024)

    def line(self, width: int) -> str:
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        rss = statistics.median(self.rss)
        return (
            f"{self.label:<{width}}  median wall {wall * 1000:7.1f} ms  "
            f"CPU {cpu * 1000:6.1f} ms  peak RSS {rss / 2**20:5.1f} MiB  (n={len(self.wall)})"
        )


def _docker() -> str:
    found = shutil.which("docker")
    if not found:
        sys.exit("--containers needs the docker CLI and a running engine")
    return found


def _python(code: str, *args: str, env: dict[str, str]) -> str:
    """Run ops code in a child, so this process stays small."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=env,
        timeout=600,
    ).stdout


def start_containers(n: int, run_id: str, env: dict[str, str]) -> None:
    docker = _docker()
    image = _python(
        "from tests.support.images import busybox_image; print(busybox_image())", env=env
    ).strip()
    for i in range(n):
        subprocess.run(
            [
                docker, "run", "-d", "--label", f"{LABEL}={run_id}",
                "--name", f"vots-bench-{run_id}-{i}",
                "--cpus", "0.1", "--memory", "32m", image, "sleep", "600",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
    print(f"started {n} containers ({image}, --cpus 0.1 --memory 32m, sleep 600)")


def remove_containers(run_id: str) -> None:
    docker = shutil.which("docker")
    if not docker:
        return
    ids = subprocess.run(
        [docker, "ps", "-aq", "--filter", f"label={LABEL}={run_id}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout.split()
    if ids:
        subprocess.run(
            [docker, "rm", "-f", "-v", *ids], capture_output=True, check=False, timeout=120
        )
        print(f"removed {len(ids)} containers")


def find_glances() -> str:
    """glances in a venv of the bench's own (bench/results/, not committed), so the
    project's environment is never changed by a benchmark."""
    venv = REPO / "bench" / "results" / "glances-venv"
    exe = venv / "bin" / "glances"
    if exe.is_file():
        return str(exe)
    print(f"installing glances into {venv} for the bench")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    cmd = (
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "glances", "docker"]
        if uv
        else [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "glances", "docker"]
    )
    subprocess.run(cmd, check=True, timeout=600)
    if not exe.is_file():
        sys.exit("glances did not install")
    return str(exe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=20, help="containers to start (0: none)")
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds")
    parser.add_argument(
        "--history",
        type=int,
        default=360,
        help="samples to store first, a minute apart (360: 6 h, a cron job's steady state)",
    )
    parser.add_argument("--no-bytecode-cache", action="store_true")
    args = parser.parse_args()

    # Containers are removed on SIGTERM / SIGHUP too, not only on Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    vots = shutil.which("vots-ops", path=str(BIN))
    if not vots:
        sys.exit(f"vots-ops is not installed in {BIN}")
    glances = find_glances()
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="vots-bench-report-") as tmp:
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        db = Path(tmp) / "history.sqlite3"
        try:
            if args.containers > 0:
                start_containers(args.containers, run_id, env)
            if args.history > 0:
                started = time.perf_counter()
                _python(SEED, str(db), str(args.history), env=env)
                print(
                    f"stored {args.history} samples a minute apart first "
                    f"({time.perf_counter() - started:.1f} s)"
                )
            measures = [
                Measure("vots-ops report --quiet", [vots, "report", "--quiet", "--db", str(db)]),
                Measure(
                    "  same, python -c take_sample", [sys.executable, "-c", TAKE_SAMPLE, str(db)]
                ),
                Measure("glances " + " ".join(GLANCES_ARGS), [glances, *GLANCES_ARGS]),
            ]
            for m in measures:  # warm the bytecode and page caches
                m.run(env, record=False)
                m.run(env, record=False)
            for i in range(args.rounds):
                for m in measures if i % 2 == 0 else reversed(measures):
                    m.run(env)
            lib = json.loads(_python(LIBRARY, "20", env=env))
        finally:
            if args.containers > 0:
                remove_containers(run_id)

    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    width = max(len(m.label) for m in measures)
    print(
        f"containers sampled: {lib['containers']} "
        f"({args.containers} started here){'; engine: ' + lib['error'] if lib['error'] else ''}"
    )
    print(
        f"history before the first run: {args.history} samples; rounds: {args.rounds}; "
        f"bytecode cache: {'off' if args.no_bytecode_cache else 'on'}; "
        f"this process's peak RSS (a floor for the children's): {floor / 2**20:.1f} MiB"
    )
    print(
        f"library: ops.report.sample.sample() in one process: import "
        f"{lib['import'] * 1000:.1f} ms, first sample {lib['first'] * 1000:.1f} ms, then median "
        f"{lib['median'] * 1000:.1f} ms (n={lib['n']}); peak RSS {lib['hwm_kib'] / 1024:.1f} MiB; "
        f"heavy modules loaded: {', '.join(lib['heavy']) or 'none'}"
    )
    for m in measures:
        print(m.line(width))
    ours, ref = measures[0], measures[-1]
    wall, rss = statistics.median(ours.wall), statistics.median(ours.rss)
    verdict = "within" if wall <= WALL_BUDGET_S and rss <= RSS_BUDGET else "OVER"
    print(
        f"budget {WALL_BUDGET_S * 1000:.0f} ms / {RSS_BUDGET / 2**20:.0f} MiB per cron sample: "
        f"{verdict} (vots-ops report: {wall * 1000:.0f} ms, {rss / 2**20:.1f} MiB)"
    )
    ratio = statistics.median(ref.wall) / wall
    cpu = statistics.median(ours.cpu)
    cpu_ratio = statistics.median(ref.cpu) / cpu
    print(
        f"CPU per sample: vots-ops report {cpu * 1000:.0f} ms, glances "
        f"{statistics.median(ref.cpu) * 1000:.0f} ms"
    )
    print(f"ratio glances wall / vots-ops report wall: {ratio:.1f}x (goal >= 10x)")
    print(f"ratio glances CPU / vots-ops report CPU: {cpu_ratio:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
