"""Scheduling: the crontab line cron's own parser accepts, the options a user needs
in it, idempotent installs, and the line run as cron runs it.

The user's real crontab is never touched: a stand-in ``crontab`` on PATH keeps
the table in a file and checks it with the real ``crontab -n`` (a dry run of
cron's own parser), so a line cron would refuse still fails the test.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ops.report.schedule import MARKER, Schedule, cron_line, merge_crontab, systemd_units
from tests.support.cli import Cli
from tests.support.stacks import BUNDLED

SCHED = Schedule(executable="/opt/vots ops/bin/vots-ops", db="/var/lib/vots-ops/h.sqlite3")

FAKE_CRONTAB = """#!/bin/sh
# A stand-in for crontab(1) that keeps the table in $FAKE_CRONTAB_FILE and checks
# every new table with cron's own parser (crontab -n: a dry run).
case "$1" in
  -l) if [ -f "$FAKE_CRONTAB_FILE" ]; then cat "$FAKE_CRONTAB_FILE"; else
        echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) tmp="$FAKE_CRONTAB_FILE.new"; cat > "$tmp" || exit 1
     {real} -n "$tmp" || {{ rm -f "$tmp"; exit 1; }}
     mv "$tmp" "$FAKE_CRONTAB_FILE" ;;
  *) echo "fake crontab: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def crontab(tmp_path: Path, cli: Cli) -> Path:
    """A fake ``crontab`` first on the CLI's PATH; returns the file holding the table."""
    real = shutil.which("crontab")
    assert real, "cron is not installed (apt-get install cron)"
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    fake = bindir / "crontab"
    fake.write_text(
        FAKE_CRONTAB.replace("{real}", shlex.quote(real)).replace("{{", "{").replace("}}", "}")
    )
    fake.chmod(0o755)
    table = tmp_path / "crontab.txt"
    env = cli.env()
    cli.extra.update(PATH=f"{bindir}:{env['PATH']}", FAKE_CRONTAB_FILE=str(table))
    return table


def test_cron_line_quotes_and_uses_absolute_paths() -> None:
    line = cron_line(SCHED)
    minute, rest = line.split(" ", 1)
    assert minute == "*"
    command = rest.split(" ", 4)[4]
    assert shlex.split(command) == [
        "/opt/vots ops/bin/vots-ops",
        "report",
        "--quiet",
        "--fail-on",
        "over-limit",
        "--fail-on",
        "restart",
        "--db",
        "/var/lib/vots-ops/h.sqlite3",
    ]
    assert cron_line(Schedule("/x/vots-ops", "/d", every_minutes=5)).startswith("*/5 * * * * ")
    odd = Schedule("/x/vots-ops", "/d/100%.sqlite3", textfile="/t/a b.prom")
    assert "\\%" in cron_line(odd)  # cron turns a bare % into a newline


def test_merge_is_idempotent_and_keeps_other_lines() -> None:
    mine = "0 3 * * * /usr/bin/backup\nMAILTO=ops@example.com\n"
    line = cron_line(SCHED)
    once = merge_crontab(mine, line)
    assert once.startswith(mine)
    assert once.count(MARKER) == 1 and line in once
    assert merge_crontab(once, line) == once
    newer = cron_line(Schedule(SCHED.executable, SCHED.db, every_minutes=10))
    replaced = merge_crontab(once, newer)
    assert newer in replaced and line not in replaced and replaced.count(MARKER) == 1


def test_systemd_units_name_the_command() -> None:
    units = systemd_units(Schedule("/x/vots-ops", "/d", every_minutes=5, no_docker=True))
    service, timer = units["vots-ops-report.service"], units["vots-ops-report.timer"]
    assert "ExecStart=/x/vots-ops report --quiet --fail-on over-limit --fail-on restart" in service
    assert service.rstrip().endswith("IOSchedulingClass=idle")
    assert "--no-docker" in service
    assert "OnUnitActiveSec=5min" in timer


def test_install_cron_takes_the_options_a_user_needs(
    cli: Cli, crontab: Path, tmp_path: Path
) -> None:
    crontab.write_text("0 3 * * * /usr/bin/backup\n")
    db, prom = tmp_path / "h.sqlite3", tmp_path / "vots.prom"
    args = (
        "report", "install-cron", "--install", "--db", str(db), "--stack", str(BUNDLED),
        "--textfile", str(prom), "--fail-on", "over-limit", "--fail-on", "anomaly",
        "--no-docker", "--repeat-interval", "1h", "--every", "5",
    )  # fmt: skip
    first = cli.run(*args)
    assert first.returncode == 0, first.stderr
    cli.run(*args)  # installing again replaces the line
    table = crontab.read_text()
    assert table.startswith("0 3 * * * /usr/bin/backup\n")
    assert table.count(MARKER) == 1
    (line,) = [x for x in table.splitlines() if "report --quiet" in x]
    assert line.startswith("*/5 * * * * /")
    argv = shlex.split(line.split(" ", 5)[5])
    assert Path(argv[0]).is_absolute() and Path(argv[0]).is_file()
    assert argv[1:] == [
        "report", "--quiet", "--fail-on", "over-limit", "--fail-on", "anomaly",
        "--db", str(db), "--stack", str(BUNDLED), "--textfile", str(prom), "--no-docker",
        "--repeat-interval", "3600s",
    ]  # fmt: skip

    # The line as cron runs it (sh -c, a minimal PATH): silent, exit 0, a sample stored
    # and the textfile written.
    command = line.split(" ", 5)[5]
    ran = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"},
        check=False,
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    assert db.is_file() and "vots_host_memory_total_bytes" in prom.read_text()


def test_options_before_install_cron_count_too(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    proc = cli.run("report", "--db", str(db), "--no-docker", "install-cron")
    assert proc.returncode == 0, proc.stderr
    assert f"--db {db}" in proc.stdout and proc.stdout.rstrip().endswith("--no-docker")


def test_install_cron_refuses_what_would_fail_every_minute(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("report", "install-cron", "--stack", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: file not found" in missing.stderr
    nowhere = cli.run("report", "install-cron", "--textfile", str(tmp_path / "no" / "v.prom"))
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
    bad = cli.run("report", "install-cron", "--repeat-interval", "soon")
    assert bad.returncode == 2 and "expected a duration like" in bad.stderr
    assert cli.run("report", "install-cron", "--systemd", "--install").returncode == 2


def test_a_crontab_that_cannot_be_read_is_never_overwritten(cli: Cli, tmp_path: Path) -> None:
    """`crontab -l` failing for another reason than "no crontab" (a permission, a
    broken spool) must not be taken for an empty table: ours would replace it all."""
    bindir = tmp_path / "brokenbin"
    bindir.mkdir()
    fake = bindir / "crontab"
    written = tmp_path / "written.txt"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -l ]; then echo "crontab: Permission denied" >&2; exit 1; fi\n'
        f"cat > {written}\n"
    )
    fake.chmod(0o755)
    proc = cli.run("report", "install-cron", "--install",
                   env={"PATH": f"{bindir}:{cli.env()['PATH']}"})  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: crontab -l failed (crontab: Permission denied); the crontab was left as it is"
    )
    assert not written.exists()


def test_systemd_units_keep_a_percent_literal() -> None:
    service = systemd_units(Schedule("/x/vots-ops", "/d/h%1.sqlite3"))["vots-ops-report.service"]
    assert "--db /d/h%%1.sqlite3" in service  # systemd reads %1 as a specifier
