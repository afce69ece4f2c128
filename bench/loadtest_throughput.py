"""Bench: the requests/s `vots-ops loadtest` sustains here, against stock Locust and wrk.

Why: a load test must measure the target, not its driver, and running Locust
as a managed subprocess has a start-up cost to account for. Stock Locust
(HttpUser, one process), vots-ops --processes 1 and 2 (VotsUser, exact
percentiles) and wrk -t2 -c64 (the ceiling) take turns, no wait time, against
one 12,800-byte JSON file on an nginx started here. nginx runs one worker, so
it never takes more than one of the two cores from the driver; its CPU per run
is printed. The ratios come last: the goal (vots-ops -p2 >= 6x stock), then
the connect-time guard's cost (goal < 2%), two ways in the same run: vots-ops
-p2 also runs with the guard off (an environment variable only this bench
sets), and, since that A/B is only as exact as run-to-run noise, the guard's
own work is timed (its check per connection, in a child process) and
multiplied by the connections nginx counted (stub_status) in each -p2 run,
against that run's driver CPU; the worst case, a new connection for every
request, is printed too. Then the
driver-saturation flag is checked: every vots-ops run here is driver-bound and
must carry ``driver_saturated: true``; one more run, 4 users against a server
that takes 200 ms per answer, must not (exit 1 if either is wrong).

Rounds alternate the drivers' order (one round forwards, the next backwards):
of two runs back to back, the second is about 1.5% slower here, so the default
of 4 rounds gives -p2 with and without the guard each place equally often.

Run: .venv/bin/python bench/loadtest_throughput.py [--seconds 8] [--rounds 4]
(about 3 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ops.proc import free_port, which  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402

BIN = Path(sys.executable).parent
PATH = "/data.json"
BODY_BYTES = 12_800
STOCK, VOTS1, VOTS2, WRK = "stock Locust", "vots-ops -p1", "vots-ops -p2", "wrk -t2 -c64"
# The same as VOTS2 with the connect-time guard (ops.loadtest.pinning) turned off:
# what pinning every connection to the checked addresses costs.
UNGUARDED = "-p2 no guard"

NGINX_CONF = """\
{user}
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/logs/error.log warn;
events {{
}}
http {{
    access_log off;
    default_type application/json;
    sendfile on;
    keepalive_requests 1000000;
    {temp_paths}
    server {{
        listen {listen};
        root {workdir}/www;
        location = /nginx_status {{
            stub_status;
        }}
    }}
}}
"""

STOCK_LOCUSTFILE = f"""\
from locust import HttpUser, constant, task


class StockUser(HttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("{PATH}")
"""

VOTS_LOCUSTFILE = f"""\
from locust import task

from ops.loadtest.users import VotsUser


class BenchUser(VotsUser):
    @task
    def get(self):
        self.client.get("{PATH}")
"""

SCENARIOS = """\
scenarios:
  throughput:
    description: No think time against one static file; a driver throughput bench.
    locustfile: bench_users.py
    user_classes: [BenchUser]
    users: {users}
    duration: {seconds}s
    max_requests: 100000000
"""


def body() -> bytes:
    """Deterministic JSON of exactly BODY_BYTES bytes."""
    items: list[dict[str, object]] = []
    while True:
        i = len(items)
        item = {"id": i, "name": f"item-{i:04d}", "score": i * 37 % 1000, "tags": ["vots", "bench"]}
        if len(json.dumps({"items": [*items, item], "pad": ""})) > BODY_BYTES:
            break
        items.append(item)
    pad = BODY_BYTES - len(json.dumps({"items": items, "pad": ""}))
    data = json.dumps({"items": items, "pad": "x" * pad}).encode()
    assert len(data) == BODY_BYTES
    return data


@dataclass
class Run:
    driver: str
    rps: float
    requests: int
    failures: int
    measured_s: float
    wall_s: float
    cpu_s: float  # the driver's user + sys, reaped children (Locust workers) included
    nginx_cpu_s: float
    p99_ms: float | None = None
    other_cpu_s: float = 0.0  # the rest of the machine: other processes, softirq
    driver_saturated: bool | None = None  # vots-ops runs: result.json's flag
    connections: int = 0  # TCP connections nginx accepted during the run

    @property
    def other_share(self) -> float:
        return self.other_cpu_s / (self.wall_s * (os.cpu_count() or 1))

    @property
    def overhead_s(self) -> float:
        return self.wall_s - self.measured_s


class Nginx:
    """One nginx serving PATH from a temp dir on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        for sub in ("logs", "temp", "www"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "www" / PATH.lstrip("/")).write_bytes(body())
        self.workdir = workdir
        self.listen = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.listen}"
        temp_paths = "\n    ".join(
            f"{kind}_temp_path {workdir}/temp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # Root's temp dir is 0700: workers must run as root to read the file.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(
            NGINX_CONF.format(user=user, workdir=workdir, listen=self.listen, temp_paths=temp_paths)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        error_log = self.workdir / "logs" / "error.log"
        argv = [which("nginx"), "-p", str(self.workdir), "-c", str(self.conf)]
        argv += ["-e", str(error_log), "-g", "daemon off;"]
        with (self.workdir / "logs" / "nginx.out").open("wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        host, _, port = self.listen.rpartition(":")
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = error_log.read_text(errors="replace") if error_log.exists() else ""
                raise SystemExit(f"nginx did not start:\n{log[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)

    def accepted(self) -> int:
        """Connections nginx has accepted so far (stub_status), this query's own included."""
        import http.client

        host, _, port = self.listen.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/nginx_status")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        # "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n..."
        return int(text.splitlines()[2].split()[0])

    def cpu(self) -> float:
        """CPU seconds used so far by the master and its worker."""
        import psutil

        assert self.proc is not None
        master = psutil.Process(self.proc.pid)
        return sum(
            t.user + t.system
            for t in (p.cpu_times() for p in [master, *master.children(recursive=True)])
        )


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    del fields[3:5]  # idle, iowait
    return sum(fields) / os.sysconf("SC_CLK_TCK")


def spawn(
    argv: list[str], cwd: Path, out: Path, err: Path, env: dict[str, str] | None = None
) -> tuple[int, float, float]:
    """Run to completion: (exit code, wall seconds, CPU seconds of the child and its reaped children)."""
    with out.open("wb") as o, err.open("wb") as e:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=o, stderr=e, cwd=cwd, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_utime + usage.ru_stime


def _fail(driver: str, err: Path, why: str) -> SystemExit:
    tail = err.read_text(errors="replace")[-2000:] if err.exists() else ""
    return SystemExit(f"{driver}: {why}\n{tail}")


class Bench:
    def __init__(self, tmp: Path, nginx: Nginx, args: argparse.Namespace) -> None:
        self.tmp, self.nginx, self.args = tmp, nginx, args
        self.vots = shutil.which("vots-ops", path=str(BIN))
        if not self.vots:
            raise SystemExit(f"vots-ops is not installed in {BIN}")
        self.wrk = which("wrk")
        (tmp / "stock_users.py").write_text(STOCK_LOCUSTFILE)
        (tmp / "bench_users.py").write_text(VOTS_LOCUSTFILE)
        self.scenarios = tmp / "scenarios.yaml"
        self.scenarios.write_text(SCENARIOS.format(users=args.users, seconds=args.seconds))
        self.n = 0

    def run(self, driver: str, seconds: int) -> Run:
        self.n += 1
        base = self.tmp / f"run{self.n:02d}"
        out, err = base.with_suffix(".out"), base.with_suffix(".err")
        accepted_before = self.nginx.accepted()
        cpu_before, busy_before = self.nginx.cpu(), busy_cpu()
        if driver == STOCK:
            run = self._stock(base, out, err, seconds)
        elif driver == WRK:
            run = self._wrk(out, err, seconds)
        else:
            run = self._vots(driver, out, err, seconds)
        run.nginx_cpu_s = self.nginx.cpu() - cpu_before
        run.other_cpu_s = max(0.0, busy_cpu() - busy_before - run.cpu_s - run.nginx_cpu_s)
        run.connections = self.nginx.accepted() - accepted_before - 1  # less this query's
        return run

    def _stock(self, base: Path, out: Path, err: Path, seconds: int) -> Run:
        users = str(self.args.users)
        argv = [sys.executable, "-m", "locust", "-f", str(self.tmp / "stock_users.py")]
        argv += ["--headless", "--host", self.nginx.url, "--users", users, "--spawn-rate", users]
        argv += ["--run-time", f"{seconds}s", "--only-summary", "--json-file", str(base)]
        argv += ["--exit-code-on-error", "0", "StockUser"]
        code, wall, cpu = spawn(argv, self.tmp, out, err)
        stats_file = base.with_suffix(".json")
        if code != 0 or not stats_file.exists():
            raise _fail(STOCK, err, f"exit {code}, no stats")
        entries = json.loads(stats_file.read_text())
        requests = sum(e["num_requests"] for e in entries)
        first = min(e["start_time"] for e in entries)
        last = max(e["last_request_timestamp"] for e in entries)
        measured = last - first
        return Run(
            STOCK,
            rps=requests / measured if measured > 0 else 0.0,
            requests=requests,
            failures=sum(e["num_failures"] for e in entries),
            measured_s=measured,
            wall_s=wall,
            cpu_s=cpu,
            nginx_cpu_s=0.0,
        )

    def _vots(self, driver: str, out: Path, err: Path, seconds: int) -> Run:
        assert self.vots is not None
        processes = "1" if driver == VOTS1 else "2"
        argv = [self.vots, "loadtest", "throughput", "--scenarios", str(self.scenarios)]
        argv += ["--host", self.nginx.url, "--out", str(self.tmp / "runs")]
        argv += ["--processes", processes, "--duration", f"{seconds}s", "--format", "json", "-q"]
        env = None
        if driver == UNGUARDED:
            from ops.loadtest.pinning import BENCH_UNGUARDED_ENV

            env = {**os.environ, BENCH_UNGUARDED_ENV: "1"}
        code, wall, cpu = spawn(argv, self.tmp, out, err, env)
        if code != 0:
            raise _fail(driver, err, f"exit {code}")
        result = json.loads(out.read_text())
        overall = result["overall"]
        if not result["hdr_counts_match"]:
            print(f"warning: {driver}: HdrHistogram count != Locust's request count")
        return Run(
            driver,
            rps=overall["rps"],
            requests=overall["requests"],
            failures=overall["failures"],
            measured_s=result["measured_s"],
            wall_s=wall,
            cpu_s=cpu,
            nginx_cpu_s=0.0,
            p99_ms=overall["latency_ms"].get("p99"),
            driver_saturated=result.get("driver_saturated"),
        )

    def _wrk(self, out: Path, err: Path, seconds: int) -> Run:
        argv = [self.wrk, "-t2", "-c64", f"-d{seconds}s", "--latency", self.nginx.url + PATH]
        code, wall, cpu = spawn(argv, self.tmp, out, err)
        text = out.read_text()
        done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", text)
        rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
        p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)$", text, re.M)
        non = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        errs = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
        )
        if code != 0 or not (done and rps):
            raise _fail(WRK, out, f"exit {code}")
        unit_ms = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
        return Run(
            WRK,
            rps=float(rps.group(1)),
            requests=int(done.group(1)),
            failures=(int(non.group(1)) if non else 0)
            + (sum(int(g) for g in errs.groups()) if errs else 0),
            measured_s=float(done.group(2)) * unit_ms[done.group(3)] / 1000,
            wall_s=wall,
            cpu_s=cpu,
            nginx_cpu_s=0.0,
            p99_ms=float(p99.group(1)) * unit_ms[p99.group(2)] if p99 else None,
        )


GUARD_TIMER = """
import socket, statistics, time
from ops.loadtest import pinning
pin = pinning._Pin("127.0.0.1", 8080, ["127.0.0.1"], lambda where: None)
sock, address, n = socket.socket(), ("127.0.0.1", 8080), 100_000
def batch():
    start = time.perf_counter()
    for _ in range(n):
        pin.is_target("127.0.0.1")  # the pinned resolver's test
        pin.check(sock, address)  # connect()'s test
    return (time.perf_counter() - start) / n * 1e9
batch()
print(statistics.median(batch() for _ in range(7)))
"""


def guard_ns_per_connection() -> float:
    """The guard's own work for one connection, in ns (median of 7 batches of 100,000),
    timed in a child process so this one's sockets stay unguarded."""
    out = subprocess.run(
        [sys.executable, "-c", GUARD_TIMER], cwd=REPO, capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def check_saturation_flag(bench: Bench, runs: list[Run]) -> list[str]:
    """What is wrong with the driver-saturation flag: it must be set on every vots-ops
    run above (no think time against nginx: driver-bound by design) and not on a run
    of 4 users against a server that takes 200 ms per answer (slower than the driver)."""
    import http.server
    import threading

    problems = [
        f"{r.driver}: driver_saturated is {r.driver_saturated}, expected true"
        for r in runs
        if r.driver in (VOTS1, VOTS2, UNGUARDED) and r.driver_saturated is not True
    ]

    class Slow(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(0.2)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert bench.vots is not None
    out, err = bench.tmp / "slow.out", bench.tmp / "slow.err"
    argv = [bench.vots, "loadtest", "throughput", "--scenarios", str(bench.scenarios)]
    argv += ["--host", f"http://127.0.0.1:{server.server_address[1]}", "--users", "4"]
    argv += ["--processes", "1", "--duration", "4s", "--out", str(bench.tmp / "runs")]
    argv += ["--format", "json", "-q"]
    try:
        code, _wall, _cpu = spawn(argv, bench.tmp, out, err)
    finally:
        server.shutdown()
    if code != 0:
        problems.append(f"the run against a 200 ms server exited {code}")
    else:
        result = json.loads(out.read_text())
        if result.get("driver_saturated") is not False:
            problems.append(
                f"the run against a 200 ms server has driver_saturated "
                f"{result.get('driver_saturated')}: {result.get('driver')}"
            )
    return problems


def line(prefix: str, run: Run) -> str:
    p99 = f"{run.p99_ms:7.2f} ms" if run.p99_ms is not None else "      - ms"
    return (
        f"{prefix} {run.driver:<13} {run.rps:9.1f} req/s  {run.requests:8d} requests in "
        f"{run.measured_s:5.2f} s (wall {run.wall_s:5.2f} s)  p99 {p99}  failures "
        f"{run.failures}  CPU s: driver {run.cpu_s:4.1f}, nginx {run.nginx_cpu_s:3.1f}, "
        f"rest of machine {run.other_cpu_s:3.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--users", type=int, default=32, help="Locust users, no wait time")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of an unrecorded first run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, run dirs)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 7 or not 2 <= args.seconds <= 60 or not 1 <= args.users <= 512:
        parser.error("keep it bounded: 1-7 rounds of 2-60 s, 1-512 users")

    drivers = [STOCK, VOTS1, VOTS2, UNGUARDED, WRK]
    tmp = Path(tempfile.mkdtemp(prefix="vots-bench-loadtest-"))
    nginx = Nginx(tmp / "nginx")
    print(
        f"host: {os.cpu_count()} CPUs; nginx 1 worker, {BODY_BYTES} B JSON at {nginx.url}{PATH}; "
        f"{args.users} Locust users, no wait; {args.rounds} rounds of {args.seconds} s"
    )
    runs: list[Run] = []
    try:
        nginx.start()
        bench = Bench(tmp, nginx, args)
        if args.warmup:
            for driver in drivers:  # page cache, bytecode, nginx's file cache
                bench.run(driver, args.warmup)
        for i in range(args.rounds):
            for driver in drivers if i % 2 == 0 else drivers[::-1]:
                run = bench.run(driver, args.seconds)
                runs.append(run)
                print(line(f"round {i + 1}", run), flush=True)
        flag_problems = check_saturation_flag(bench, runs)
        guard_ns = guard_ns_per_connection()
    finally:
        nginx.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    medians: dict[str, float] = {}
    for driver in drivers:
        mine = [r for r in runs if r.driver == driver]
        medians[driver] = statistics.median(r.rps for r in mine)
        cores = statistics.median(r.cpu_s / r.wall_s for r in mine)
        nginx_cpu = statistics.median(r.nginx_cpu_s / r.measured_s for r in mine)
        print(
            f"median {driver:<13} {medians[driver]:9.1f} req/s  (driver {cores:4.2f} cores "
            f"over its wall time, nginx {nginx_cpu:4.0%} of its one core)"
        )
    for driver in (STOCK, VOTS1, VOTS2, UNGUARDED):
        mine = [r for r in runs if r.driver == driver]
        overhead = statistics.median(r.overhead_s for r in mine)
        walls = statistics.median(r.wall_s for r in mine)
        print(
            f"start-up overhead {driver:<13} median {overhead:5.2f} s "
            f"(wall {walls:5.2f} s minus first-to-last request)"
        )
    bad = [r for r in runs if r.failures]
    if bad:
        print(f"warning: {len(bad)} runs had failed requests (see above)")
    busy = [r for r in runs if r.other_share > 0.10]
    if busy:
        print(
            f"warning: in {len(busy)} runs other processes used over 10% of the machine "
            "(see 'rest of machine' above); the figures are not from a quiet machine"
        )
    print(f"ratio requests/s {VOTS2} / {WRK}: {medians[VOTS2] / medians[WRK]:.2f}x")
    print(
        f"ratio requests/s {VOTS2} / {STOCK}: {medians[VOTS2] / medians[STOCK]:.2f}x (goal >= 6x)"
    )
    guarded = [r for r in runs if r.driver == VOTS2]
    unguarded = [r for r in runs if r.driver == UNGUARDED]
    pairs = [a.rps / b.rps for a, b in zip(guarded, unguarded, strict=True)]
    conns = statistics.median(r.connections for r in guarded)
    share = statistics.median(r.connections * guard_ns / 1e9 / r.cpu_s for r in guarded)
    worst = statistics.median(guard_ns / 1e9 / (r.cpu_s / r.requests) for r in guarded)
    print(
        f"connect-time guard: {guard_ns:.0f} ns of work per connection; {VOTS2} opened a median "
        f"{conns:.0f} connections per run (keep-alive), so {share:.5%} of its driver CPU; "
        f"a new connection for every request would cost {worst:.2%}"
    )
    print(
        f"guard A/B per round {VOTS2} / {UNGUARDED}: "
        + ", ".join(f"{x:.3f}" for x in pairs)
        + f" (run-to-run noise of about {max(abs(1 - x) for x in pairs):.0%}: the timed figure decides)"
    )
    guard = medians[VOTS2] / medians[UNGUARDED]
    print(
        f"ratio requests/s {VOTS2} / {UNGUARDED}: {guard:.3f}x; the connect-time guard costs "
        f"{share:.3%} of the driver's CPU, {worst:.2%} with no keep-alive (goal < 2%)"
    )
    for problem in flag_problems:
        print(f"FAIL saturation flag: {problem}")
    if not flag_problems:
        print("saturation flag: set on every vots-ops run, not against the 200 ms server")
    return 1 if flag_problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
