"""Bench: a Swarm rolling update under load, as ``plan --target swarm`` renders it
(start-first, health-gated) against a stop-first update of the same change.

The bundled stack made deployable on a one-node swarm here
(tests/support/swarm.py), deployed with ``docker stack deploy``. Each round,
while ``vots-ops loadtest`` sends 10 analyses/s through the edge (HTTPS), the
agent (2 replicas) gets a new environment value with ``docker service update
--env-add RELEASE=n``: once with the rendered update_config (start-first) and
once with ``--update-order stop-first`` added, the order alternating between
rounds. Each run: failed requests, p99 from each request's intended start,
and the time from the update's start to its completion.

The ratio printed last: stop-first failed requests per round, and p99
stop-first / start-first.

With several replicas both orders keep serving (nginx retries a refused
connection on another task); with one replica only start-first does, so
``--replicas 2,1`` runs the rounds at each count.

Run: .venv/bin/python bench/swarm_update.py [--rounds 2] [--replicas 2,1]
(about 7 minutes per round and count, plus the images' build the first time on
a machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.cli import Cli  # noqa: E402
from tests.support.swarm import (  # noqa: E402
    SwarmSite,
    build_images,
    deploy,
    docker,
    one_node_swarm,
    remove,
    swarm_site,
    update_started,
    wait_converged,
    wait_update,
)

NAMES = ("agent", "rag", "redis", "chroma", "nginx", "prometheus")


def _update(site: SwarmSite, cli: Cli, release: int, order: str | None) -> dict[str, Any]:
    runs = site.root / f"runs-{release}"
    load = cli.start_load("swarm-update", site.https, runs, "--duration", "120s", settle=10)
    argv = ["service", "update", "--detach", "--env-add", f"RELEASE={release}"]
    if order:
        argv += ["--update-order", order]
    start = time.monotonic()
    before = update_started(site, "agent")
    docker(*argv, site.service("agent"))
    final = wait_update(site, "agent", 600, before)
    took = time.monotonic() - start
    out, _ = load.communicate(timeout=600)
    if final != "completed":
        raise SystemExit(f"the update ended {final}")
    overall = json.loads(out)["overall"]
    if order:  # back to the rendered order for the next run (no task is replaced)
        docker(
            "service", "update", "--detach", "--update-order", "start-first", site.service("agent")
        )
    return {
        "requests": overall["requests"],
        "failures": overall["failures"],
        "p99_ms": overall["latency_from_intended_ms"]["p99"],
        "update_s": took,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--replicas",
        default="2",
        help="the agent's replica counts to run the rounds at, comma-separated (e.g. 2,1)",
    )
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vots-bench-swarm-"))
    images = build_images(root)
    project = f"votsbench{uuid.uuid4().hex[:6]}"
    counts = [int(n) for n in args.replicas.split(",")]
    results: dict[tuple[int, str], list[dict[str, Any]]] = {
        (n, kind): [] for n in counts for kind in ("start-first", "stop-first")
    }
    with one_node_swarm(f"{project}.datastores"):
        (root / "site").mkdir()
        site = swarm_site(root / "site", project, images, duration="120s")
        cli = Cli.in_dir(site.root, VOTS_OPS_SCENARIOS=str(site.scenarios))
        try:
            proc = cli.run("plan", "--target", "swarm", "-q", timeout=120)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            deploy(site)
            wait_converged(site, NAMES, 600)
            release = 1
            for n in counts:
                docker("service", "scale", "--detach", f"{site.service('agent')}={n}")
                wait_converged(site, ["agent"], 600)
                for r in range(args.rounds):
                    order = ["start-first", "stop-first"]
                    if r % 2:
                        order.reverse()
                    for kind in order:
                        release += 1
                        res = _update(site, cli, release, None if kind == "start-first" else kind)
                        results[(n, kind)].append(res)
                        print(
                            f"{n} replica(s), round {r + 1} {kind:11s}: {res['failures']:4d} "
                            f"failed of {res['requests']:5d}, p99 {res['p99_ms']:8.0f} ms, "
                            f"update {res['update_s']:5.1f} s",
                            flush=True,
                        )
        finally:
            left = remove(site)
            if left:
                print(f"left behind: {left}")
    for n in counts:
        ours, naive = results[(n, "start-first")], results[(n, "stop-first")]
        print(
            f"{n} replica(s), medians: start-first "
            f"{statistics.median(r['failures'] for r in ours):.0f} failed, "
            f"p99 {statistics.median(r['p99_ms'] for r in ours):.0f} ms; stop-first "
            f"{statistics.median(r['failures'] for r in naive):.0f} failed, "
            f"p99 {statistics.median(r['p99_ms'] for r in naive):.0f} ms"
        )
    for n in counts:
        ours, naive = results[(n, "start-first")], results[(n, "stop-first")]
        ratio = statistics.median(r["p99_ms"] for r in naive) / max(
            1.0, statistics.median(r["p99_ms"] for r in ours)
        )
        print(
            f"ratio, {n} replica(s): stop-first failed "
            f"{','.join(str(r['failures']) for r in naive)} vs start-first "
            f"{','.join(str(r['failures']) for r in ours)}; p99 stop-first/start-first "
            f"{ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
