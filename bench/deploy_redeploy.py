"""Bench: deploy to all-healthy (images cached, and cold), and a redeploy under load,
`vots-ops deploy` side by side with the naive `docker-compose up -d --force-recreate`.

Why: a deploy an operator waits on should be quick when nothing has to be
built, and a redeploy must not drop requests. The stack is the bundled one made
runnable here (tests/support/loop_site.py: stand-ins, loopback ports, what has
no image left out).

1. **Time to all-healthy**: ``vots-ops deploy`` from nothing (containers and
   volumes removed) to every service healthy and verified, with every image
   cached, ``--rounds`` times; with ``--cold``, once more after the stack's
   images were removed (``docker rmi``; the Debian base and the wheelhouse
   stay: they are downloads, not builds).
2. **Redeploy under load** (``--change release``): the agent (2 replicas) gets
   a new environment value while ``vots-ops loadtest`` sends 10 requests/s of
   analyses through the edge (HTTPS). Each round does it both ways, the order
   alternating: ``vots-ops deploy`` (replicas replaced one at a time, the edge
   pinned and reloaded) and the naive way, ``docker-compose up -d
   --force-recreate --no-deps agent`` with the same files (what one types by
   hand; the edge is not told). Failed requests and p99 (from each request's
   intended start) per run.
3. **New limits under load** (``--change limits``): the agent's CPU cap moves,
   which the plan's water-fill turns into new limits for every service (what
   ``plan --recommendations`` does), while agent and rag requests go through
   the edge. ``vots-ops deploy`` sets them on the running containers; the naive
   way is ``docker-compose up -d`` with the same files, which recreates every
   container whose limits changed, the edge among them.

The ratio printed last: naive failed requests per round, and p99 naive / ours.

Run: .venv/bin/python bench/deploy_redeploy.py [--rounds 2] [--cold]
[--change release|limits|both] (about 12 minutes per change kind with the
defaults, plus the cold build with --cold).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ops.proc import which  # noqa: E402
from tests.support.cli import Cli  # noqa: E402
from tests.support.docker import force_cleanup  # noqa: E402
from tests.support.loop_site import WITHOUT, WITHOUT_ARGS, LoopSite, make_site  # noqa: E402

SERVICES = ("redis", "chroma", "rag", "agent", "nginx", "prometheus", "node-exporter")


def _vots(cli: Cli, *args: str, timeout: float = 3000) -> subprocess.CompletedProcess[str]:
    proc = cli.run(*args, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"vots-ops {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _deploy(cli: Cli) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        _vots(cli, "deploy", "--offline", *WITHOUT_ARGS, "--format", "json").stdout
    )
    return found


def _set_release(site: LoopSite, cli: Cli, release: str) -> None:
    import yaml

    path = site.root / "stack.yaml"
    data = yaml.safe_load(path.read_text())
    data["services"]["agent"]["environment"]["RELEASE"] = release
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _vots(cli, "plan", "-q")


#: The agent's CPU cap, by round: each differs from the last, so every round is a change.
CPU_CAPS = ("0.5", "0.4")  # under the 0.63 the plan gives it: binding


def _set_limits(site: LoopSite, cli: Cli, change: str) -> None:
    import yaml

    path = site.root / "stack.yaml"
    data = yaml.safe_load(path.read_text())
    data["services"]["agent"]["resources"]["cpu"]["max"] = float(
        CPU_CAPS[int(change) % len(CPU_CAPS)]
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _vots(cli, "plan", "-q")


def _naive(site: LoopSite, kind: str) -> None:
    files = [
        "-f", str(site.root / "docker-compose.yml"), "-f", str(site.root / ".vots-deploy.yml"),
    ]  # fmt: skip
    if kind == "release":
        up = ["up", "-d", "--force-recreate", "--no-deps", "--no-build", "agent"]
    else:  # compose recreates what changed
        up = ["up", "-d", "--no-deps", "--no-build", *(s for s in SERVICES if s not in WITHOUT)]
    argv = [which("docker-compose"), "-p", site.project, *files, *up]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=site.root, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"docker-compose up failed:\n{proc.stderr[-3000:]}")


def _under_load(site: LoopSite, cli: Cli, kind: str, change: str, how: str) -> dict[str, Any]:
    """A redeploy ``how`` ("vots-ops" or "naive") of ``kind`` ("release": a new agent
    environment; "limits": new limits everywhere) number ``change``, under load."""
    if kind == "release":
        _set_release(site, cli, change)
    else:
        _set_limits(site, cli, change)
    runs = site.root / "runs" / f"{how}-{kind}-{change}"
    scenario = "agent-redeploy" if kind == "release" else "limits-redeploy"
    load = cli.start_load(scenario, site.https, runs, "--duration", "90s", settle=10)
    start = time.monotonic()
    actions = {}
    if how == "vots-ops":
        actions = _deploy(cli)["actions"]
    else:
        _naive(site, kind)
    took = time.monotonic() - start
    out, _ = load.communicate(timeout=600)
    if how == "naive":  # leave the stack as planned for the next round (not timed)
        _deploy(cli)
    result = json.loads(out)
    overall = result["overall"]
    return {
        "how": how,
        "kind": kind,
        "actions": actions,
        "seconds": took,
        "requests": overall["requests"],
        "failures": overall["failures"],
        "p99_ms": overall["latency_from_intended_ms"]["p99"],
        "errors": result.get("errors"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also time a deploy with no image")
    parser.add_argument("--change", choices=("release", "limits", "both"), default="both")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vots-bench-deploy-"))
    site = make_site(root, f"votsbench{uuid.uuid4().hex[:8]}")
    cli = Cli.in_dir(root, VOTS_OPS_SCENARIOS=str(site.scenarios))
    print(f"stack: the bundled one, without {', '.join(WITHOUT)}; project {site.project}")
    try:
        _vots(cli, "plan", "-q")
        _vots(cli, "images", "build", "--offline", *WITHOUT_ARGS, "-q")
        cached = []
        for i in range(args.rounds):
            if i:
                _vots(cli, "down", "--volumes", "--yes", "-q")
            start = time.monotonic()
            _deploy(cli)
            cached.append(time.monotonic() - start)
            print(f"deploy to all-healthy, images cached: {cached[-1]:.1f}s")
        cold = None
        if args.cold:
            _vots(cli, "down", "--volumes", "--yes", "-q")
            images = json.loads(
                _vots(cli, "images", "build", "--offline", *WITHOUT_ARGS, "--format", "json").stdout
            )
            refs = sorted({i["use"] for i in images} | {i["ref"] for i in images})
            subprocess.run([which("docker"), "rmi", "--force", *refs], capture_output=True)
            start = time.monotonic()
            _deploy(cli)
            cold = time.monotonic() - start
            print(f"deploy to all-healthy, every image built: {cold:.1f}s")
        rows = []
        change = 0
        kinds = ("release", "limits") if args.change == "both" else (args.change,)
        for kind in kinds:
            for i in range(args.rounds):
                order = ("vots-ops", "naive") if i % 2 == 0 else ("naive", "vots-ops")
                for how in order:
                    change += 1
                    row = _under_load(site, cli, kind, str(change), how)
                    rows.append(row)
                    print(
                        f"{kind} round {i + 1} {how:>8}: {row['requests']} requests, "
                        f"{row['failures']} failed, p99 {row['p99_ms']:.0f} ms, "
                        f"change applied in {row['seconds']:.1f}s"
                    )
                    if row["actions"]:
                        print(f"    actions: {json.dumps(row['actions'])[:400]}")
                    if row["failures"]:
                        print(f"    errors: {json.dumps(row['errors'])[:400]}")
    finally:
        cli.run("down", "--volumes", "--yes", "-q", timeout=300)
        force_cleanup("docker", site.project)
    print(f"deploy, images cached: median {statistics.median(cached):.1f}s over {len(cached)}")
    if cold is not None:
        print(f"deploy, cold: {cold:.1f}s ({cold / statistics.median(cached):.1f}x the cached)")
    for kind in kinds:
        ours = [r for r in rows if r["how"] == "vots-ops" and r["kind"] == kind]
        naive = [r for r in rows if r["how"] == "naive" and r["kind"] == kind]
        p99_ours = statistics.median(r["p99_ms"] for r in ours)
        p99_naive = statistics.median(r["p99_ms"] for r in naive)
        print(
            f"{kind}: failed requests per redeploy: vots-ops {[r['failures'] for r in ours]}, "
            f"naive {[r['failures'] for r in naive]}"
        )
        print(
            f"{kind}: p99 during the redeploy (median): vots-ops {p99_ours:.0f} ms, "
            f"naive {p99_naive:.0f} ms; ratio naive/vots-ops {p99_naive / p99_ours:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
