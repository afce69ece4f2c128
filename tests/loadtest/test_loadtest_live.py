"""`vots-ops loadtest` for real: Locust against a uvicorn stand-in and the rendered nginx on loopback.

Every run is the CLI a user types (a subprocess), a few seconds long, and
judged by what the user relies on: the exit code, the one-line error, the
result.json figures, the HTML report in a browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.loadtest.verdict import SCHEMA
from ops.proc import free_port
from tests.support import cli
from tests.support.browser import chromium
from tests.support.edge import serve_edge
from tests.support.processes import stop_process
from tests.support.standin import Standin, serve_standin

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCENARIOS = HERE / "scenarios.yaml"
RUN_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with serve_standin() as running:
        yield running


def vots(*args: str, cwd: Path, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return cli.run("loadtest", *args, cwd=cwd, timeout=timeout)


def run_json(
    name: str, host: str, tmp: Path, *extra: str, scenarios: Path = SCENARIOS
) -> tuple[int, dict[str, Any], str]:
    proc = vots(
        name,
        "--scenarios",
        str(scenarios),
        "--host",
        host,
        "--out",
        str(tmp / "runs"),
        "--format",
        "json",
        *extra,
        cwd=tmp,
    )
    result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, result, proc.stderr


@pytest.fixture(scope="module")
def passing(
    standin: Standin, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], str]:
    return run_json("pass", standin.url, tmp_path_factory.mktemp("pass"))


def test_a_passing_run_exits_0_with_exact_counts(passing: tuple[int, dict[str, Any], str]) -> None:
    code, result, err = passing
    assert code == 0, err
    assert result["schema"] == SCHEMA and result["verdict"] == "pass"
    assert (
        result["planned"]["processes"] == os.cpu_count()
        and result["planned"]["workers"] == os.cpu_count()
    )
    assert set(result["endpoints"]) == {"GET /fast", "GET /sleep/50"}
    overall = result["overall"]
    assert overall["requests"] > 100 and overall["failures"] == 0
    # Every request Locust counted is in the merged worker histograms.
    assert result["hdr_counts_match"] is True
    assert sum(e["requests"] for e in result["endpoints"].values()) == overall["requests"]
    assert 2.5 <= result["measured_s"] <= 4.5
    assert all(s["pass"] for s in result["slos"]) and len(result["slos"]) == 4
    sleep = result["endpoints"]["GET /sleep/50"]["latency_ms"]
    assert 50.0 <= sleep["p50"] <= sleep["p95"] <= sleep["p99"] <= sleep["max"]
    assert result["stop_reason"] == "duration"


def test_run_directory_holds_result_and_reports(
    passing: tuple[int, dict[str, Any], str], tmp_path: Path
) -> None:
    _code, result, _err = passing
    run_dir = Path(result["run_dir"])
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "locust.html",
        "locust.log",
        "report.html",
        "result.json",
    ]
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["overall"] == result["overall"] and on_disk["slos"] == result["slos"]
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")], (
        "staging left behind"
    )
    # The report opens in a browser: the verdict section and Locust's own app both render.
    dom = chromium(
        "--dump-dom",
        "--virtual-time-budget=5000",
        (run_dir / "report.html").as_uri(),
        profile=tmp_path / "profile",
    ).stdout
    body = dom[dom.index("<body") :]
    assert 'id="vots-verdict"' in body and 'data-verdict="pass"' in body
    assert "GET /sleep/50" in body
    # Locust's own app rendered into its root (these headings exist only once React ran).
    root = body[body.index('id="root"') :]
    assert "Locust Test Report" in root and "Request Statistics" in root, root[:500]


def test_latency_breach_on_a_slow_endpoint_exits_1(standin: Standin, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = vots(
        "slow",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        standin.url,
        "--out",
        str(runs),
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: 1 failed: GET /sleep/300: p(95) < 100ms")
    )
    assert (
        "FAIL" in proc.stdout and "GET /sleep/300" in proc.stdout and "p(95) < 100ms" in proc.stdout
    )
    (run_dir,) = runs.iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    (slo,) = result["slos"]
    assert slo["target"] == "GET /sleep/300" and slo["pass"] is False
    assert 300.0 <= slo["actual"] < 400.0
    assert slo["margin"] == pytest.approx(100.0 - slo["actual"], abs=0.01)
    assert "margin" in proc.stdout and f"-{slo['actual'] - 100:.0f} ms" in proc.stdout


def test_real_5xx_errors_breach_the_error_rate(standin: Standin, tmp_path: Path) -> None:
    code, result, err = run_json("errors", standin.url, tmp_path)
    assert code == 1, err
    fail = result["endpoints"]["GET /fail"]
    assert fail["failures"] == fail["requests"] > 0 and fail["error_rate"] == 1.0
    assert result["endpoints"]["GET /fast"]["failures"] == 0
    (slo,) = result["slos"]
    assert slo["pass"] is False and slo["actual"] == pytest.approx(result["overall"]["error_rate"])
    assert any(e["endpoint"] == "GET /fail" and "500" in e["error"] for e in result["errors"])


def test_an_slo_for_an_endpoint_that_got_no_requests_fails(
    standin: Standin, tmp_path: Path
) -> None:
    code, result, err = run_json("typo", standin.url, tmp_path)
    assert code == 1, err
    (slo,) = result["slos"]
    assert slo["pass"] is False and "no requests recorded for 'GET /fasst'" in slo["note"]


def test_unreachable_target_is_found_before_the_run(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    proc = vots(
        "pass",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        f"http://127.0.0.1:{port}",
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert time.monotonic() - started < 10
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: http://127.0.0.1:{port} refused the connection (nothing listens on 127.0.0.1:{port}); is the stack up?"
    ]
    assert not (tmp_path / "runs").exists()


def test_a_host_that_answers_nothing_times_out_before_the_run(tmp_path: Path) -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = vots(
            "pass",
            "--scenarios",
            str(SCENARIOS),
            "--host",
            f"http://127.0.0.1:{port}",
            cwd=tmp_path,
        )
    assert proc.returncode == 2
    assert "did not answer within 5s" in proc.stderr


@pytest.mark.parametrize("host", ["http://192.0.2.10", "https://198.51.100.7:8443"])
def test_a_non_local_target_is_refused(host: str, tmp_path: Path) -> None:
    proc = vots(
        "pass",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        host,
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: refusing to send load to {host}: ")
    assert "--allow-host" in line
    assert not (tmp_path / "runs").exists()


def test_baseline_regression_fails_the_run(standin: Standin, tmp_path: Path) -> None:
    standin.set_delay(0)
    code, before, err = run_json("delayed", standin.url, tmp_path)
    assert code == 0, err
    baseline = Path(before["run_dir"]) / "result.json"
    standin.set_delay(40)
    try:
        code, after, err = run_json("delayed", standin.url, tmp_path, "--baseline", str(baseline))
    finally:
        standin.set_delay(0)
    assert code == 1, err
    flagged = {(r["target"], r["metric"]) for r in after["regressions"]}
    assert {("overall", "p50"), ("GET /delayed", "p95")} <= flagged
    p50 = next(r for r in after["regressions"] if r["target"] == "overall" and r["metric"] == "p50")
    assert p50["actual"] >= 40.0 and p50["baseline"] < 10.0 and p50["change_pct"] > 10
    assert "GET /delayed: p95" in err


def test_a_bad_baseline_is_refused_before_the_run(standin: Standin, tmp_path: Path) -> None:
    bad = tmp_path / "old.json"
    bad.write_text('{"schema": "something-else"}')
    proc = vots(
        "pass",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        standin.url,
        "--baseline",
        str(bad),
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: not a vots-ops loadtest result (schema 'something-else', expected '{SCHEMA}')"
    ]
    assert not (tmp_path / "runs").exists()


def test_percentiles_are_exact_where_locust_rounds(standin: Standin, tmp_path: Path) -> None:
    code, result, err = run_json("accuracy", standin.url, tmp_path)
    assert code == 0, err
    s123 = result["endpoints"]["GET /sleep/123"]
    # asyncio.sleep(0.123) plus loopback HTTP and a busy machine's scheduling:
    # 123 ms and a little more, never less.
    assert 123.0 <= s123["latency_ms"]["p50"] <= 134.0, s123
    # Locust keeps 2 significant digits above 100 ms: its median is 120 or 130.
    assert s123["locust_latency_ms"]["p50"] in (120, 130), s123
    s50 = result["endpoints"]["GET /sleep/50"]["latency_ms"]
    assert 50.0 <= s50["p50"] <= 56.0, s50
    assert s50["p50"] != round(s50["p50"])  # microsecond resolution, not whole ms


def test_arrival_rate_shows_a_stalling_server_in_latency_from_intended_start(
    standin: Standin, tmp_path: Path
) -> None:
    code, result, err = run_json("stall", standin.url, tmp_path)
    assert code == 1, err  # the SLO (p99 < 100ms) is judged on latency from intended start
    o = result["overall"]
    assert result["latency_basis"] == "intended"
    # The offered load holds: users catch up after each stall instead of lowering the rate.
    assert o["rps"] >= 85.0, o
    svc, intended = o["latency_ms"], o["latency_from_intended_ms"]
    # The server is stalled one second in two: about half of all requests were
    # meant to start during a stall and waited up to a second.
    assert svc["p90"] < 100.0, svc
    assert intended["p90"] >= 500.0, intended
    assert intended["p99"] >= 900.0, intended
    assert intended["avg"] > 3 * svc["avg"], (svc, intended)
    (slo,) = result["slos"]
    assert slo["actual"] == intended["p99"]


def test_arrival_rate_refuses_user_classes_it_cannot_pace(standin: Standin, tmp_path: Path) -> None:
    proc = vots(
        "plain-rate",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        standin.url,
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: locust exited with 2 before writing results: ")
    assert "arrival_rate needs user classes derived from ops.loadtest.users.VotsUser" in line
    assert "(not: Plain)" in line
    (failed,) = (tmp_path / "runs").iterdir()
    assert failed.name.endswith(".failed") and (failed / "locust.log").is_file()


def test_max_requests_bounds_the_run(standin: Standin, tmp_path: Path) -> None:
    started = time.monotonic()
    code, result, err = run_json(
        "pass", standin.url, tmp_path, "--duration", "60s", "--max-requests", "300"
    )
    assert time.monotonic() - started < 30
    assert code == 0, err
    assert result["stop_reason"] == "max_requests"
    # Each worker stops at its share: its users send nothing more, and only
    # requests already in flight (one per user at most) still count.
    # (Measured: 306-307 with 6 users; a missed stop would overshoot by thousands.)
    assert 300 <= result["overall"]["requests"] <= 300 + 2 * result["planned"]["users"]


def test_the_bundled_smoke_scenario_through_the_rendered_nginx(
    standin: Standin, tmp_path: Path
) -> None:
    upstream = standin.url.removeprefix("http://")
    with serve_edge(tmp_path / "edge", upstream) as edge:
        code, result, err = run_json(
            "smoke",
            edge.https,
            tmp_path,
            "--duration",
            "5s",
            "--stack",
            str(ROOT / "stack.yaml"),
            scenarios=ROOT / "loadtests" / "scenarios.yaml",
        )
    assert code == 0, err
    assert {
        "POST /api/v1/analyze_code",
        "GET /api/v1/search",
        "GET /",
        "GET /_next/static/[chunk]",
    } <= set(result["endpoints"])
    assert result["overall"]["failures"] == 0
    assert result["host"] == edge.https


def test_master_and_worker_on_loopback(standin: Standin, tmp_path: Path) -> None:
    port = free_port()
    common = [
        "pass",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        standin.url,
        "--master-port",
        str(port),
    ]
    master = cli.start(
        "loadtest", *common, "--master", "--master-bind-host", "127.0.0.1", "--expect-workers", "1",
        "--format", "json", "--out", str(tmp_path / "runs"), cwd=tmp_path,
    )  # fmt: skip
    worker = cli.start(
        "loadtest",
        *common,
        "--worker",
        "--master-host",
        "127.0.0.1",
        "--processes",
        "1",
        cwd=tmp_path,
    )
    try:
        out, err = master.communicate(timeout=RUN_TIMEOUT_S)
        worker.wait(timeout=30)
    finally:
        stop_process(master)
        stop_process(worker)
    assert master.returncode == 0, err
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else ""
    result = json.loads(out)
    assert result["planned"]["mode"] == "master" and result["planned"]["workers"] == 1
    assert result["overall"]["requests"] > 50 and result["hdr_counts_match"] is True


def test_live_progress_on_a_terminal(standin: Standin, tmp_path: Path) -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = cli.start(
            "loadtest", "pass", "--scenarios", str(SCENARIOS), "--host", standin.url,
            "--out", str(tmp_path / "runs"), "--format", "json",
            cwd=tmp_path, stderr=secondary, env=cli.cli_env(TERM="xterm"),
        )  # fmt: skip
        os.close(secondary)
        secondary = -1
        seen = b""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(primary)
        if secondary != -1:
            os.close(secondary)
    assert proc.returncode == 0
    screen = seen.decode(errors="replace")
    # Redrawn status: elapsed of planned seconds, users, current rate, p95, requests, failures.
    import re

    assert re.search(
        r"\b[1-3]/3s  users 6( w\d+)?  +\d+ req/s  p95 \d+ ms  [\d,]+ req  0 fail", screen
    ), screen[-1500:]
    assert json.loads(out)["verdict"] == "pass"  # stdout stays the result alone


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_stops_locust_and_keeps_what_was_measured(
    standin: Standin, tmp_path: Path, signame: str
) -> None:
    """Ctrl-C at a terminal, SIGTERM from timeout(1)/systemd/CI: the same clean stop."""
    import signal

    import psutil

    proc = cli.start(
        "loadtest", "pass", "--scenarios", str(SCENARIOS), "--host", standin.url,
        "--out", str(tmp_path / "runs"), "--duration", "60s", "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    out, err, children = cli.signal_midway(proc, getattr(signal, signame), after=6)
    assert children, "no Locust processes"
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["stop_reason"] == "interrupted" and result["verdict"] == "fail"
    assert result["overall"]["requests"] > 100 and result["measured_s"] < 20
    assert "run interrupted" in err.strip().splitlines()[-1]
    assert (Path(result["run_dir"]) / "report.html").is_file()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"Locust left running: {alive}"


def test_redirects_are_not_followed(standin: Standin, tmp_path: Path) -> None:
    # Run from the checkout with a relative --scenarios, as a user types it
    # (Locust runs in the locustfile's folder, so paths must not stay relative).
    proc = vots(
        "redirect", "--scenarios", "tests/loadtest/scenarios.yaml", "--host", standin.url,
        "--out", str(tmp_path / "runs"), "--format", "json", cwd=ROOT,
    )  # fmt: skip
    code, result, err = proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr
    assert code == 0, err
    # The 302 is the response; nothing went to the Location (127.0.0.2:9 would refuse).
    assert result["endpoints"]["GET /redirect"]["failures"] == 0
    assert result["endpoints"]["GET /redirect"]["requests"] > 10
    assert result["errors"] == []


def test_a_request_to_another_host_stops_the_run(standin: Standin, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = vots(
        "escape",
        "--scenarios",
        str(SCENARIOS),
        "--host",
        standin.url,
        "--out",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert time.monotonic() - started < 10  # the scenario would run 10 s
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "error: stopped: a request went to http://127.0.0.2:9/elsewhere, outside "
    )


def test_task_exceptions_fail_the_run(standin: Standin, tmp_path: Path) -> None:
    code, result, err = run_json("broken", standin.url, tmp_path)
    assert code == 1, err
    assert result["overall"]["failures"] == 0  # the requests themselves were fine
    (exc,) = result["exceptions"]
    assert "missing_key" in exc["msg"] and exc["count"] > 10
    assert "task errors (first: " in err.strip().splitlines()[-1]
    # No SLOs in this scenario: the default objective was judged and says so.
    (slo,) = result["slos"]
    assert slo["threshold"] == "error_rate < 1%" and "default objective" in slo["note"]
