"""`vots-ops loadtest` honest about its own limits: a saturated driver, a threshold read
wrongly, a task error's type, a baseline of another run, the live line and Locust's report.

Real runs against loopback servers started here: nginx serving one file (faster than
one Locust process) and the uvicorn stand-in (``/sleep/200``: slower than the driver).
Saturation is judged on what makes it certain, not on a figure a busy machine moves:
50 users without think time against nginx keep one Locust process always runnable;
4 users waiting 200 ms each keep it idle nearly all the time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest

from ops.loadtest.driver import ADVICE
from ops.loadtest.verdict import SCHEMA
from ops.proc import free_port, which
from tests.loadtest.test_loadtest_live import SCENARIOS, run_json, vots
from tests.support.cli import Cli
from tests.support.processes import stop_process
from tests.support.standin import Standin, serve_standin

NGINX_CONF = """\
{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
}}
http {{
    access_log off;
    default_type application/json;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
    }}
}}
"""


@pytest.fixture(scope="module")
def standin() -> Iterator[Standin]:
    with serve_standin() as running:
        yield running


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real nginx on loopback serving /static.json: far faster than one Locust process."""
    d = tmp_path_factory.mktemp("nginx")
    (d / "www").mkdir()
    (d / "tmp").mkdir()
    (d / "www" / "static.json").write_text(json.dumps({"ok": True}))
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(NGINX_CONF.format(user=user, d=d, port=port))
    argv = [which("nginx"), "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    proc = subprocess.Popen(
        [*argv, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, (d / "error.log").read_text(errors="replace")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def saturated_run(
    nginx: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("saturate")
    return run_json(Cli.in_dir(tmp), "saturate", nginx, tmp, "--processes", "1")


@pytest.mark.slow
def test_a_driver_bound_run_says_so_in_result_table_html_and_verdict(
    saturated_run: tuple[int, dict[str, Any], str], nginx: str, tmp_path: Path
) -> None:
    code, result, err = saturated_run
    assert code == 0, err
    assert result["driver_saturated"] is True, result["driver"]["processes"]
    (proc,) = [p for p in result["driver"]["processes"] if p["role"] != "master"]
    # At a full core; or, on a machine busy with other work (a CI machine), kept
    # waiting for one long enough that its own timestamps are late.
    limits = result["driver"]
    assert proc["saturated"] and (
        proc["core_demand"] >= limits["threshold"] or proc["cpu_wait"] >= limits["wait_threshold"]
    ), limits
    (slo,) = result["slos"]
    assert slo["pass"] and ADVICE in slo["note"]
    html = (Path(result["run_dir"]) / "report.html").read_text(encoding="utf-8")
    assert html_escape(ADVICE) in html
    # The table a user reads says it too.
    table = vots(
        Cli.in_dir(tmp_path), "saturate", "--scenarios", str(SCENARIOS), "--host", nginx,
        "--processes", "1", "--out", str(tmp_path / "runs"), cwd=tmp_path,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    shown = " ".join(table.stdout.split())
    assert f"* driver saturated: {ADVICE}" in shown and "pass*" in shown, table.stdout


@pytest.mark.slow
def test_locusts_report_names_the_users_locustfile(
    saturated_run: tuple[int, dict[str, Any], str],
) -> None:
    _code, result, _err = saturated_run
    locust_html = (Path(result["run_dir"]) / "locust.html").read_text(encoding="utf-8")
    assert "standin_users.py" in locust_html
    assert "_locust_plugin.py" not in locust_html


@pytest.mark.slow
def test_a_run_against_a_server_slower_than_the_driver_is_not_saturated(
    cli: Cli, standin: Standin, tmp_path: Path
) -> None:
    code, result, err = run_json(cli, "unsaturated", standin.url, tmp_path, "--processes", "1")
    assert code == 0, err
    assert result["driver_saturated"] is False, result["driver"]
    (proc,) = result["driver"]["processes"]
    limits = result["driver"]
    assert proc["samples"] >= 2 and proc["core_demand"] < limits["threshold"], limits
    assert proc["cpu_wait"] < limits["wait_threshold"], limits
    assert all("saturated" not in s.get("note", "") for s in result["slos"])
    html = (Path(result["run_dir"]) / "report.html").read_text(encoding="utf-8")
    assert html_escape(ADVICE) not in html


@pytest.mark.slow
def test_a_task_exception_is_reported_with_its_type(
    cli: Cli, standin: Standin, tmp_path: Path
) -> None:
    code, result, err = run_json(cli, "broken", standin.url, tmp_path, "--processes", "2")
    assert code == 1, err
    (exc,) = result["exceptions"]
    assert exc["msg"] == "KeyError: 'missing_key'" and exc["count"] > 1
    assert "(first: KeyError: 'missing_key')" in err.strip().splitlines()[-1]


@pytest.mark.slow
def test_requests_that_raised_inside_catch_response_are_counted(
    cli: Cli, standin: Standin, tmp_path: Path
) -> None:
    before = standin.requests()
    code, result, err = run_json(cli, "broken-catch", standin.url, tmp_path, "--processes", "1")
    reached = standin.requests() - before
    assert code == 1, err
    overall = result["overall"]
    # Every request the server answered is in the figures, as a failure with the exception.
    assert 0 < overall["requests"] <= reached, (overall, reached)
    assert overall["failures"] == overall["requests"]
    assert any("missing_key" in e["error"] for e in result["errors"]), result["errors"]
    last = err.strip().splitlines()[-1]
    assert "no requests completed" not in last and "KeyError: 'missing_key'" in last


def _baseline(tmp_path: Path, **changes: Any) -> Path:
    doc = {"schema": SCHEMA, "scenario": "pass", "host": "http://127.0.0.1:9", **changes}
    doc.setdefault("overall", {"requests": 10})
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {"host": "http://127.0.0.2:9"},
            "a run against 'http://127.0.0.2:9', not 'http://127.0.0.1:9'",
        ),
        ({"scenario": "slow"}, "a run of scenario 'slow', not 'pass'"),
    ],
)
def test_a_baseline_of_another_target_or_scenario_is_refused_before_the_run(
    cli: Cli, tmp_path: Path, changes: dict[str, Any], why: str
) -> None:
    old = _baseline(tmp_path, **changes)
    proc = vots(
        cli, "pass", "--scenarios", str(SCENARIOS), "--host", "http://127.0.0.1:9",
        "--baseline", str(old), "--out", str(tmp_path / "runs"), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {old}: the baseline is {why}: its figures are not comparable "
        "[--force to compare anyway]"
    ]
    assert not (tmp_path / "runs").exists()


def test_force_needs_a_baseline(cli: Cli, tmp_path: Path) -> None:
    proc = vots(cli, "pass", "--scenarios", str(SCENARIOS), "--force", cwd=tmp_path)
    assert proc.returncode == 2 and "--force" in proc.stderr and "--baseline" in proc.stderr


@pytest.mark.slow
def test_force_compares_a_baseline_of_another_target_with_a_warning(
    cli: Cli, standin: Standin, tmp_path: Path
) -> None:
    code, before, err = run_json(cli, "pass", standin.url, tmp_path, "--processes", "1")
    assert code == 0, err
    moved = dict(before, host="http://127.0.0.2:9")
    old = tmp_path / "old.json"
    old.write_text(json.dumps(moved))
    code, after, err = run_json(
        cli, "pass", standin.url, tmp_path, "--processes", "1",
        "--baseline", str(old), "--tolerance", "1000%", "--force",
    )  # fmt: skip
    assert code == 0, err
    assert after["baseline_mismatch"] == [
        f"a run against 'http://127.0.0.2:9', not '{standin.url}'"
    ]
    assert (
        "warning: compared anyway (--force): the baseline is a run against 'http://127.0.0.2:9'"
        in err
    )


def test_the_live_line_stops_at_the_duration_and_counts_rps_like_the_result() -> None:
    """Locust's shutdown is not run time (no ``9/8s``), and req/s is the result's
    definition: requests over the seconds since the first request."""
    from ops.cli.loadtest import _Progress
    from ops.console import Console

    progress = _Progress(Console(quiet=True))
    progress.duration = 8.0
    text = progress.text({"elapsed": 9.4, "users": 5, "requests": 800, "measured_s": 8.0})
    assert text.startswith("  8/8s  users 5") and "    100 req/s" in text, text
    early = progress.text({"elapsed": 2.2, "users": 5, "requests": 300, "measured_s": 1.5})
    assert early.startswith("  2/8s") and "    200 req/s" in early, early
