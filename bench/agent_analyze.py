"""The agent service's analyze_code (services/agent) against the tools run one by one, in one run.

The file: a real 300-line module of this repository (``--file``, default
``ops/loadtest/_locust_plugin.py``). The agent (``vots-agent serve``, one
analysis worker) and a Redis server run pinned to one CPU (``--cpu``, default
the last one); the client runs on the others.

What is measured, side by side:

* uncached ``POST /api/v1/analyze_code``: every request the file with a unique
  comment appended (a cache miss), sequential, p50/p95 and requests/s;
* cached: the same request again and again (a Redis hit), p50/p95, requests/s;
* reference: what a CI script does without the service, on the same CPU:
  ``ruff check --output-format json``, ``bandit -f json``, ``radon cc -j`` and
  ``radon mi -j`` on the file as four processes, one after the other;
* ``GET /healthz`` latency idle, then while ``--load`` clients keep the worker
  and the queue full of uncached analyses: the ratio loaded / idle.

Goals: uncached p95 <= 1 s for a 300-line file on one CPU, cached p95 <= 10 ms,
/healthz under load <= 2x idle. Prints a table, then the ratios, last. Results
go to bench/results/agent_analyze-TIMESTAMP.json.

Run: services/agent/.venv/bin/python bench/agent_analyze.py [--rounds 40] [--cached 300]
     [--health 300] [--load 4]   (about 2 minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
API = "/api/v1/analyze_code"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(seconds: list[float], wall: float | None = None) -> dict[str, float]:
    out = {
        "n": len(seconds),
        "p50_ms": statistics.median(seconds) * 1000,
        "p95_ms": pct(seconds, 0.95) * 1000,
        "max_ms": max(seconds) * 1000,
    }
    if wall:
        out["rps"] = len(seconds) / wall
    return out


def pinned(cpu: int) -> Any:
    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
        os.setsid()

    return pin


def wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def reference(path: Path, cpu: int) -> float:
    """The four tools as a CI script runs them, one process each, on the agent's CPU."""
    ruff = str(BIN / "ruff")
    argvs = [
        [
            ruff,
            "check",
            "--isolated",
            "--no-cache",
            "--exit-zero",
            "--output-format",
            "json",
            str(path),
        ],
        [str(BIN / "bandit"), "-q", "-f", "json", "--exit-zero", str(path)],
        [str(BIN / "radon"), "cc", "-j", str(path)],
        [str(BIN / "radon"), "mi", "-j", str(path)],
    ]
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, capture_output=True, check=False, preexec_fn=pinned(cpu), timeout=300)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", type=Path, default=REPO / "ops" / "loadtest" / "_locust_plugin.py")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--cached", type=int, default=300)
    ap.add_argument("--health", type=int, default=300)
    ap.add_argument("--load", type=int, default=4)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    args = ap.parse_args()
    code = args.file.read_text(encoding="utf-8")
    lines = code.count("\n")
    client_cpus = os.sched_getaffinity(0) - {args.cpu} or {args.cpu}
    os.sched_setaffinity(0, client_cpus)
    redis_exe = shutil.which("redis-server")
    if redis_exe is None:
        raise SystemExit("redis-server is not installed (bash .ci/setup test installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="vots-agent-bench-"))
    rport, aport = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    started = time.perf_counter()
    try:
        procs.append(
            subprocess.Popen(
                [redis_exe, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(args.cpu),
            )
        )  # fmt: skip
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "REDIS_URL": f"redis://127.0.0.1:{rport}/0",
            "AGENT_WORKERS": "1",
            "AGENT_QUEUE": "64",
            "LOG_LEVEL": "warning",
        }
        procs.append(
            subprocess.Popen(
                [str(BIN / "vots-agent"), "serve", "--host", "127.0.0.1", "--port", str(aport)],
                env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "agent.log").open("wb"),
                preexec_fn=pinned(args.cpu),
            )
        )  # fmt: skip
        url = f"http://127.0.0.1:{aport}"
        wait(url + "/readyz")
        client = httpx.Client(base_url=url, timeout=300)
        name = (
            str(args.file.relative_to(REPO)) if args.file.is_relative_to(REPO) else args.file.name
        )

        def body(salt: str) -> dict[str, Any]:
            return {
                "files": [{"name": name, "content": f"{code}\n# {salt}\n"}],
                "options": {"llm": False},
            }

        for i in range(3):  # warm: imports, connections
            client.post(API, json=body(f"warm {i}")).raise_for_status()
        ref_file = tmp / "ref.py"
        uncached: list[float] = []
        ref: list[float] = []
        findings = 0
        wall_uncached = 0.0
        for i in range(args.rounds):  # each side in turn, the order swapped every round
            ref_file.write_text(f"{code}\n# ref {i}\n")
            order = ("ours", "ref") if i % 2 == 0 else ("ref", "ours")
            for side in order:
                if side == "ref":
                    ref.append(reference(ref_file, args.cpu))
                    continue
                t = time.perf_counter()
                r = client.post(API, json=body(f"miss {i}"))
                took = time.perf_counter() - t
                r.raise_for_status()
                doc = r.json()
                assert doc["cache"]["hit"] is False
                findings = doc["summary"]["findings"]
                uncached.append(took)
                wall_uncached += took
        cached: list[float] = []
        same = body("hit")
        client.post(API, json=same).raise_for_status()
        t0 = time.perf_counter()
        for _ in range(args.cached):
            t = time.perf_counter()
            r = client.post(API, json=same)
            cached.append(time.perf_counter() - t)
            assert r.json()["cache"]["hit"] is True
        wall_cached = time.perf_counter() - t0

        def health(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                client.get("/healthz").raise_for_status()
                out.append(time.perf_counter() - t)
                time.sleep(0.005)
            return out

        idle = health(args.health)
        stop = threading.Event()
        served = [0]

        def loader(k: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    r = c.post(API, json=body(f"load {k} {n}"))
                    served[0] += r.status_code == 200

        threads = [
            threading.Thread(target=loader, args=(k,), daemon=True) for k in range(args.load)
        ]
        for th in threads:
            th.start()
        time.sleep(1.0)
        loaded = health(args.health)
        depth = [
            ln
            for ln in client.get("/metrics").text.splitlines()
            if ln.startswith("agent_queue_depth")
        ]
        stop.set()
        for th in threads:
            th.join(timeout=300)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)

    out = {
        "file": name,
        "lines": lines,
        "findings": findings,
        "cpu": args.cpu,
        "uncached": summary(uncached, wall_uncached),
        "cached": summary(cached, wall_cached),
        "reference_cli": summary(ref, sum(ref)),
        "healthz_idle": summary(idle),
        "healthz_loaded": summary(loaded),
        "load": {"clients": args.load, "analyses_served": served[0], "queue_depth_seen": depth},
        "seconds": time.perf_counter() - started,
    }
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"agent_analyze-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(
        f"{name}: {lines} lines, {findings} findings; agent and Redis on CPU {args.cpu}, one worker"
    )
    print(f"{'measure':34} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'req/s':>8}")
    for key, label in (
        ("uncached", "analyze_code, uncached"),
        ("cached", "analyze_code, cached (Redis)"),
        ("reference_cli", "ruff+bandit+radon CLIs, one file"),
        ("healthz_idle", "/healthz idle"),
        ("healthz_loaded", f"/healthz, {args.load} clients analysing"),
    ):
        s = out[key]
        rps = f"{s['rps']:8.1f}" if "rps" in s else " " * 8
        print(f"{label:34} {s['n']:>5} {s['p50_ms']:9.2f} {s['p95_ms']:9.2f} {rps}")
    print(f"queue during the loaded /healthz run: {' '.join(depth) or 'n/a'}")
    print(f"results: {path.relative_to(REPO)} ({out['seconds']:.0f} s in all)")
    u, c, r = out["uncached"], out["cached"], out["reference_cli"]
    hi, hl = out["healthz_idle"], out["healthz_loaded"]
    print(
        f"ratio uncached p50, CLIs / agent: {r['p50_ms'] / u['p50_ms']:.2f}x (goal p95 <= 1000 ms: {u['p95_ms']:.0f} ms)"
    )
    print(
        f"ratio cached p50, uncached / cached: {u['p50_ms'] / c['p50_ms']:.0f}x (goal p95 <= 10 ms: {c['p95_ms']:.2f} ms)"
    )
    print(
        f"ratio /healthz p50 loaded / idle: {hl['p50_ms'] / hi['p50_ms']:.2f}x, p95 {hl['p95_ms'] / hi['p95_ms']:.2f}x (goal <= 2x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
