"""Plan to manifests for a 50-service stack: each ``--target`` of ``vots-ops plan``.

A stack of 50 services (each with a port, a route, a healthcheck, CPU and memory
bounds; every fifth a datastore with a volume) is planned with the CLI as a
user runs it, ``vots-ops plan --target T --out DIR`` into a fresh directory
(load, fit, render, compare, write; start-up included), for compose, swarm
and k8s, interleaved round by round. The reference, in the same run, is
``docker-compose config`` reading the compose file that plan rendered: the
compose tool itself parsing the same 50 services. Prints the median per
target and the ratios last.
Run: .venv/bin/python bench/plan_targets.py [--rounds 7] [--services 50]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
VOTS = str(REPO / ".venv" / "bin" / "vots-ops")


def stack(n: int) -> dict[str, object]:
    services: dict[str, object] = {}
    for i in range(n):
        name = f"svc{i:02d}"
        if i % 5 == 4:
            services[name] = {
                "image": f"example/{name}:1",
                "language": "datastore",
                "port": 6379,
                "resources": {
                    "cpu": {"min": 0.1, "max": 1},
                    "memory": {"min": "128M", "max": "1G"},
                },
                "health": ["true"],
                "read_only": True,
                "volumes": {"data": "/data"},
            }
        else:
            services[name] = {
                "image": f"example/{name}:1",
                "language": "python",
                "port": 8000,
                "replicas": 2 if i % 3 == 0 else 1,
                "resources": {
                    "cpu": {"min": 0.1, "max": 1},
                    "memory": {"min": "128M", "max": "1G"},
                },
                "health": "/healthz",
                "metrics": "/metrics",
                "depends_on": [f"svc{(i // 5) * 5 + 4:02d}"] if (i // 5) * 5 + 4 < n else [],
                "environment": {"LOG_LEVEL": "info"},
                "routes": [{"path": f"/api/{name}", "rate_limit": "20r/s", "burst": 40}],
            }
    return {
        "project": "bench",
        "host": {"cpus": 64, "memory": "256G"},
        "domain": "bench.example.com",
        "tls": {"certificate": "/etc/ssl/bench/fullchain.pem", "key": "/etc/ssl/bench/key.pem"},
        "services": services,
    }


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--services", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vots-bench-plan-"))
    try:
        (work / "stack.yaml").write_text(yaml.safe_dump(stack(args.services), sort_keys=False))
        times: dict[str, list[float]] = {"compose": [], "swarm": [], "k8s": [], "reference": []}
        sizes: dict[str, int] = {}
        for r in range(args.rounds):
            for target in ("compose", "swarm", "k8s"):
                out = work / f"out-{target}-{r}"
                times[target].append(
                    timed([VOTS, "plan", "-q", "--target", target, "--out", str(out)], work)
                )
                sizes[target] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            compose = work / f"out-compose-{r}" / "docker-compose.yml"
            times["reference"].append(
                timed(
                    [
                        shutil.which("docker-compose") or "docker-compose",
                        "-f",
                        str(compose),
                        "config",
                        "-q",
                    ],
                    work,
                )
            )
        print(f"{args.services} services, {args.rounds} rounds, medians:")
        for name, values in times.items():
            label = (
                "docker-compose config (reference)"
                if name == "reference"
                else f"plan --target {name}"
            )
            size = f"  {sizes[name] / 1024:.0f} KiB written" if name in sizes else ""
            print(f"  {label:36s} {statistics.median(values) * 1000:8.0f} ms{size}")
        ref = statistics.median(times["reference"])
        ratios = ", ".join(
            f"{t} {statistics.median(times[t]) / ref:.2f}x" for t in ("compose", "swarm", "k8s")
        )
        print(f"ratio to docker-compose config: {ratios}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
