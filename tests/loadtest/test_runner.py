"""The Locust command line and the failure line vots-ops shows when Locust dies."""

from __future__ import annotations

from pathlib import Path

from ops.loadtest.runner import RunOptions, locust_argv, log_tail
from ops.loadtest.scenario import Scenario

SC = Scenario.model_validate(
    {"locustfile": "u.py", "user_classes": ["A", "B"], "users": 8, "duration": "2.5s"}
)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_local_processes_keep_the_master_on_loopback_on_a_free_port(tmp_path: Path) -> None:
    argv = locust_argv(
        SC, tmp_path / "u.py", RunOptions(host="http://127.0.0.1:1", processes=2), tmp_path
    )
    assert _flag(argv, "--processes") == "2"
    assert _flag(argv, "--master-bind-host") == "127.0.0.1"
    assert _flag(argv, "--master-bind-port") == _flag(argv, "--master-port") != "5557"
    assert _flag(argv, "--run-time") == "3s" and _flag(argv, "--users") == "8"
    assert _flag(argv, "--spawn-rate") == "8"  # all users at once when not given
    assert argv[-2:] == ["A", "B"]


def test_one_process_runs_without_a_master(tmp_path: Path) -> None:
    argv = locust_argv(
        SC, tmp_path / "u.py", RunOptions(host="http://127.0.0.1:1", processes=1), tmp_path
    )
    assert "--processes" not in argv and "--master" not in argv and "--headless" in argv


def test_worker_takes_no_load_shape_flags(tmp_path: Path) -> None:
    opts = RunOptions(host="http://127.0.0.1:1", processes=3, mode="worker", master_host="10.0.0.5")
    argv = locust_argv(SC, tmp_path / "u.py", opts, tmp_path)
    assert "--worker" in argv and _flag(argv, "--master-host") == "10.0.0.5"
    assert "--users" not in argv and "--run-time" not in argv and _flag(argv, "--processes") == "3"


def test_the_failure_line_is_the_cause_not_the_shutdown_notice(tmp_path: Path) -> None:
    (tmp_path / "locust.log").write_text(
        "[2026-11-25 16:47:01,000] vm/INFO/locust.main: Starting Locust 2.47.0\n"
        "Traceback (most recent call last):\n"
        '  File "zmqrpc.py", line 1, in __init__\n'
        "locust.exception.RPCError: Socket bind failure: Address already in use (addr='tcp://*:5557')\n"
        "[2026-11-25 16:47:02,000] vm/INFO/locust.main: Shutting down (exit code 0)\n"
    )
    assert log_tail(tmp_path).startswith("locust.exception.RPCError: Socket bind failure")
    (tmp_path / "locust.log").write_text("just one line\n")
    assert log_tail(tmp_path) == "just one line"
