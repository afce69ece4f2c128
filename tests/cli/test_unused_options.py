"""An option that would do nothing is refused (exit 2, one line naming it), never ignored.

Each case runs the real command. Refusal comes before any work: the loadtest
cases aim at a loopback port nothing listens on (``127.0.0.1:9``), so a run
that got past the refusal would fail on the target with another line; the
profile cases name the PID of a process the test itself started, and nothing
samples it. Only what was typed is refused: the same setting from an exported
variable passes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Cli

NOWHERE = "http://127.0.0.1:9"
ROOT = Path(__file__).resolve().parents[2]
#: 12 and 10 in Arabic-Indic digits: float() reads them, a strict parser does not.
TWELVE, TEN = "\u0661\u0662", "\u0661\u0660"


def _refused(proc: subprocess.CompletedProcess[str], line: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {line}"), lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def pid() -> Iterator[int]:
    """A Python process of the test's own, idle for the module's length."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ loadtest


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["smoke", "--host", NOWHERE, "--tolerance", "5%"],
            "--tolerance does nothing without --baseline",
        ),
        (["--list", "--users", "5"], "--users does nothing with --list"),
        (["--list", "--host", NOWHERE], "--host does nothing with --list"),
        (["--list", "--baseline", "/tmp"], "--baseline does nothing with --list"),
        (["--list", "smoke"], "SCENARIO does nothing with --list"),
        (
            ["smoke", "--worker", "--host", NOWHERE, "--users", "3"],
            "--users does nothing with --worker (its master runs and judges the load)",
        ),
        (
            ["smoke", "--worker", "--host", NOWHERE, "--format", "json"],
            "--format does nothing with --worker",
        ),
        (
            ["smoke", "--worker", "--host", NOWHERE, "--duration", "5s", "--arrival-rate", "5/s"],
            "--duration and --arrival-rate do nothing with --worker",
        ),
        (
            ["smoke", "--worker", "--host", NOWHERE, "--baseline", "/tmp"],
            "--baseline does nothing with --worker",
        ),
    ],
)
def test_loadtest_refuses_what_does_nothing(cli: Cli, args: list[str], line: str) -> None:
    _refused(cli.run("loadtest", *args, timeout=60), line)


def test_loadtest_list_still_works_with_what_it_reads(cli: Cli) -> None:
    proc = cli.run("loadtest", "--list", "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '"scenarios"' in proc.stdout
    quiet = cli.run("loadtest", "--list", "--quiet", timeout=60)
    assert quiet.returncode == 0, quiet.stderr  # --quiet is every command's, never refused


def test_an_exported_runs_dir_is_not_refused_with_list(cli: Cli, tmp_path: Path) -> None:
    proc = cli.run("loadtest", "--list", env={"VOTS_OPS_RUNS": str(tmp_path)}, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_tolerance_with_a_baseline_passes_the_refusal(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run"
    proc = cli.run(
        "loadtest",
        "smoke",
        "--host",
        NOWHERE,
        "--baseline",
        str(missing),
        "--tolerance",
        "5%",
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "does nothing" not in proc.stderr
    assert str(missing) in proc.stderr  # the baseline was looked at: the option is used


def test_a_worker_keeps_its_host_and_processes(cli: Cli) -> None:
    proc = cli.run(
        "loadtest", "smoke", "--worker", "--host", NOWHERE, "--processes", "2", timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "does nothing" not in proc.stderr
    assert "127.0.0.1:9" in proc.stderr  # it got as far as checking the target


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1_0", "'1_0'"),
        (TWELVE, repr(TWELVE)),
        ("1e1", "'1e1'"),
        ("inf%", "'inf%'"),
        ("nan", "'nan'"),
    ],
)
def test_tolerance_is_read_strictly(cli: Cli, value: str, shown: str) -> None:
    proc = cli.run(
        "loadtest",
        "smoke",
        "--host",
        NOWHERE,
        "--baseline",
        "/tmp",
        "--tolerance",
        value,
        timeout=60,
    )
    _refused(
        proc,
        f"Invalid value for '--tolerance': expected a percentage like 10% (got {shown})",
    )


def test_a_long_tolerance_is_cut_short_in_the_error(cli: Cli) -> None:
    proc = cli.run("loadtest", "smoke", "--tolerance", "9" * 5000, timeout=60)
    _refused(proc, "Invalid value for '--tolerance': expected a percentage like 10%")
    assert "(5002 characters)" in proc.stderr and len(proc.stderr) < 300


@pytest.mark.parametrize(
    ("option", "value"),
    [("--duration", TWELVE), ("--duration", TWELVE + "s"), ("--arrival-rate", TEN + "/s")],
)
def test_loadtest_numbers_are_ascii_digits(cli: Cli, option: str, value: str) -> None:
    proc = cli.run("loadtest", "smoke", "--host", NOWHERE, option, value, timeout=60)
    _refused(proc, f"Invalid value for '{option}'")


# ------------------------------------------------------------------ profile


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--match", "python"], "--match does nothing with a pid"),
        (["--dump", "--duration", "5s"], "--duration does nothing with a thread dump"),
        (["--dump", "--rate", "50"], "--rate does nothing with a thread dump"),
        (["--dump", "--top", "3"], "--top does nothing with --dump"),
        (["--dump", "--out", "DIR"], "--out does nothing with --dump"),
        (["--dump", "--no-idle"], "--no-idle does nothing with a thread dump"),
        (["--pprof-url", NOWHERE], "--pprof-url does nothing with the py-spy profiler"),
        (["--language", "rust", "--gil"], "--gil does nothing with the perf profiler"),
        (
            ["--language", "rust", "--native", "--nonblocking"],
            "--native and --nonblocking do nothing with the perf profiler",
        ),
    ],
)
def test_profile_refuses_what_does_nothing(
    cli: Cli, pid: int, args: list[str], line: str, tmp_path: Path
) -> None:
    args = [str(tmp_path / "runs") if a == "DIR" else a for a in args]
    proc = cli.run("profile", "--pid", str(pid), *args, timeout=60)
    _refused(proc, line)
    assert not (tmp_path / "runs").exists()


def test_pprof_refuses_py_spy_switches_and_rate(cli: Cli) -> None:
    proc = cli.run(
        "profile",
        "--language",
        "go",
        "--pprof-url",
        NOWHERE,
        "--native",
        "--idle",
        "--rate",
        "50",
        timeout=60,
    )
    _refused(proc, "--rate, --native and --idle do nothing with the pprof profiler")


def test_profile_dump_still_works(cli: Cli, pid: int) -> None:
    proc = cli.run("profile", "--pid", str(pid), "--dump", "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f'"pid": {pid}' in proc.stdout


def test_profile_duration_is_ascii_digits(cli: Cli, pid: int) -> None:
    proc = cli.run("profile", "--pid", str(pid), "--duration", TWELVE, timeout=60)
    _refused(proc, "Invalid value for '--duration'")


# ------------------------------------------------------------------ plan


@pytest.mark.parametrize("mode", ["--check", "--dry-run"])
def test_plan_refuses_force_where_nothing_is_written(cli: Cli, mode: str) -> None:
    proc = cli.run("plan", "--stack", str(ROOT / "stack.yaml"), mode, "--force", timeout=60)
    _refused(proc, f"--force does nothing with {mode}")


def test_a_long_typed_value_is_cut_short_in_the_error(cli: Cli) -> None:
    pattern = "no-such-process-" + "x" * 5000
    proc = cli.run("profile", "--match", pattern, timeout=60)
    _refused(proc, "no process matches 'no-such-process-xxx")
    assert f"\u2026 ({len(pattern) + 2} characters)" in proc.stderr
    assert len(proc.stderr) < 300, proc.stderr
