"""Scheduling: the crontab line cron really accepts, and idempotent installs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from ops.report.schedule import MARKER, Schedule, cron_line, merge_crontab, systemd_units

SCHED = Schedule(executable="/opt/vots ops/bin/vots-ops", db="/var/lib/vots-ops/h.sqlite3")


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
        "--db",
        "/var/lib/vots-ops/h.sqlite3",
    ]
    assert cron_line(Schedule("/x/vots-ops", "/d", every_minutes=5)).startswith("*/5 * * * * ")


def test_merge_is_idempotent_and_keeps_other_lines() -> None:
    mine = "0 3 * * * /usr/bin/backup\nMAILTO=ops@example.com\n"
    once = merge_crontab(mine, cron_line(SCHED))
    twice = merge_crontab(once, cron_line(SCHED))
    assert once == twice
    assert once.startswith(mine)
    assert once.count(MARKER) == 1
    changed = merge_crontab(once, cron_line(Schedule("/x/vots-ops", "/d", every_minutes=5)))
    assert changed.count(MARKER) == 1 and "*/5" in changed and "/opt/vots" not in changed


def test_systemd_units_name_the_command() -> None:
    units = systemd_units(SCHED)
    assert (
        "ExecStart='/opt/vots ops/bin/vots-ops' report --quiet --fail-on over-limit"
        in units["vots-ops-report.service"]
    )
    assert "OnUnitActiveSec=1min" in units["vots-ops-report.timer"]


@pytest.fixture
def saved_crontab() -> Iterator[str]:
    crontab = shutil.which("crontab")
    assert crontab, "cron is installed by .ci/setup"
    before = subprocess.run([crontab, "-l"], capture_output=True, text=True, check=False)
    yield crontab
    if before.returncode == 0:
        subprocess.run([crontab, "-"], input=before.stdout, text=True, check=True)
    else:
        subprocess.run([crontab, "-r"], capture_output=True, check=False)


def test_install_into_the_real_crontab(saved_crontab: str) -> None:
    from ops.report.schedule import install_crontab

    install_crontab(cron_line(SCHED))
    install_crontab(cron_line(SCHED))
    table = subprocess.run([saved_crontab, "-l"], capture_output=True, text=True, check=True).stdout
    assert table.count(MARKER) == 1
    assert cron_line(SCHED) in table
