"""`vots-ops report` under the faults of real machines, through the real CLI.

* Clocks: libfaketime (``faketime -f +400d``) moves the wall clock of one
  `vots-ops` process only, exactly as a wrong RTC or a restored VM does; the
  monotonic clock and the kernel's boot_id stay real
  (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as they do when a machine's clock is
  stepped. Nothing of ours is told about the fake.
* Damaged rows: bytes flipped in the database file on disk (SQLite's
  integrity_check still says ok), and wrong types written with SQL.
* Disks: a real tmpfs of a few MiB, filled up with ``dd``, then remounted
  read-only; a history file owned by root used by an unprivileged user.
* Standard output: /dev/full and a pipe whose reader has gone.

Every run must end with one clear line (or none) and the documented exit code:
never a traceback, never a history lost or frozen.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.report.history import DAY, HOUR, History, Point
from ops.report.sample import sample
from tests.support.cli import Cli

MINUTES_7D = 7 * 24 * 60
SERIES_FOR_HOURLY = 20
HOURS_23D = 23 * 24


def _sql(db: Path, query: str, *args: Any) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def _counts(db: Path) -> tuple[int, int]:
    (row,) = _sql(db, "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM hourly)")
    return row


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def _faketime(offset: str) -> tuple[str, ...]:
    exe = shutil.which("faketime")
    assert exe, "faketime is not installed (apt-get install faketime)"
    return (exe, "-f", offset)


FAKE_ENV = {"FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def month(tmp_path: Path) -> Path:
    """This host's history of 30 days: a week of per-minute samples (the raw
    retention, ~10,000 samples) and 23 days of hourly aggregates for 20 series
    (~11,000 rows), the last sample a minute ago, compacted a minute ago."""
    db = tmp_path / "month.sqlite3"
    now = __import__("time").time()
    host = socket.gethostname()
    real = sample(docker=False)  # the newest sample is a real one: the next run rates from it
    rows = [
        (now - 60 * (MINUTES_7D - i), host, real if i == MINUTES_7D - 1 else {}, [
            Point("host", "cpu_pct", 10.0 + i % 7),
            Point("host", "memory_used_pct", 40.0),
            Point("host", "load1", 0.5),
        ])
        for i in range(MINUTES_7D)
    ]  # fmt: skip
    with History(db, auto_compact=False) as h:
        h._record_many(rows[:-1])
        # The newest as cron records it: this boot's id and monotonic clock, so the
        # next run's wall clock is judged against where that clock says it is.
        ts, _, _, points = rows[-1]
        h.record(ts, host, real, points, boot_id=real["host"]["boot_id"], mono=real["mono"] - 60)
        h._set_last_compact(now - 60)
    conn = sqlite3.connect(db)
    with conn:
        ids = [
            conn.execute(
                "INSERT INTO series (host, scope, metric) VALUES (?, 'host', ?) RETURNING id",
                (host, f"m{k}"),
            ).fetchone()[0]
            for k in range(SERIES_FOR_HOURLY)
        ]
        first_hour = int((now - 30 * DAY) // HOUR) * HOUR
        conn.executemany(
            "INSERT INTO hourly (series_id, hour_ts, count, mean, min, max, p95)"
            " VALUES (?, ?, 60, 1, 0, 2, 2)",
            [(sid, first_hour + h * HOUR) for sid in ids for h in range(HOURS_23D)],
        )
    conn.close()
    assert _counts(db) == (MINUTES_7D, SERIES_FOR_HOURLY * HOURS_23D)
    return db


# ------------------------------------------------------------------------ clocks


@pytest.mark.slow
@pytest.mark.parametrize("offset", ["+400d", "+8d", "-3d", "-20h", "+2h"])
def test_a_clock_far_off_once_loses_nothing_and_freezes_nothing(
    cli: Cli, month: Path, offset: str
) -> None:
    before = _counts(month)
    last_compact = _sql(month, "SELECT value FROM meta WHERE key = 'last_compact'")
    wrong = cli.run(
        "report", "--db", str(month), "--no-docker", "--quiet", "--format", "json",
        prefix=_faketime(offset), env=FAKE_ENV,
    )  # fmt: skip
    assert wrong.returncode == 0, wrong.stderr
    _no_traceback(wrong)
    (line,) = wrong.stderr.splitlines()
    side = "behind" if offset.startswith("-") else "ahead"
    amount = f"{offset.strip('+-d')} d" if offset.endswith("d") else f"{offset.strip('+-h')} h"
    words = "behind" if side == "behind" else "ahead of"
    assert line.startswith(f"warning: the clock is {amount} {words} the history"), line
    assert "nothing is compacted or pruned" in line
    assert json.loads(wrong.stdout)["clock"]["verdict"] == side
    # Nothing folded, nothing deleted: one more (flagged) sample, the same aggregates.
    assert _counts(month) == (before[0] + 1, before[1])
    assert _sql(month, "SELECT value FROM meta WHERE key = 'last_compact'") == last_compact
    assert _sql(month, "SELECT count(*) FROM samples WHERE clock != 'ok'") == [(1,)]

    # The clock is right again (NTP): rates come from the flagged sample at once (same
    # boot, so the monotonic clock gives the interval), and that sample is re-dated.
    right = cli.run("report", "--db", str(month), "--no-docker", "--format", "json")
    assert right.returncode == 0, right.stderr
    _no_traceback(right)
    data = json.loads(right.stdout)
    assert data["note"] is None and data["interval_s"] > 0, data["note"]
    assert data["host"]["rates"]["cpu_pct"] is not None
    assert "re-dated from the monotonic clock" in right.stderr
    assert _sql(month, "SELECT count(*) FROM samples WHERE clock != 'ok'") == [(0,)]
    (newest,) = _sql(month, "SELECT ts FROM samples ORDER BY id DESC LIMIT 2")[1:]
    assert abs(newest[0] - data["time"]) <= data["interval_s"] + 1  # back on the real timeline
    assert _counts(month)[1] == before[1]


@pytest.mark.slow
def test_a_clock_that_stays_wrong_is_said_once_per_episode(cli: Cli, month: Path) -> None:
    """Under cron (--quiet), a clock 400 days off for many runs mails one line, not one a minute."""
    args = ("report", "--db", str(month), "--no-docker", "--quiet")
    said = [cli.run(*args, prefix=_faketime("+400d"), env=FAKE_ENV) for _ in range(3)]
    assert [p.returncode for p in said] == [0, 0, 0]
    assert [len(p.stderr.splitlines()) for p in said] == [1, 0, 0]
    # Rates between the flagged runs themselves stay right (same boot, monotonic clock).
    flagged = cli.run(
        "report", "--db", str(month), "--no-docker", "--format", "json",
        prefix=_faketime("+400d"), env=FAKE_ENV,
    )  # fmt: skip
    assert json.loads(flagged.stdout)["note"] is None


# ------------------------------------------------------------------ damaged rows


def _runs(cli: Cli, db: Path, n: int) -> None:
    for _ in range(n):
        proc = cli.run("report", "--db", str(db), "--no-docker", "--quiet")
        assert proc.returncode == 0, proc.stderr


def test_a_flipped_byte_in_a_stored_sample_is_skipped_once(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    _runs(cli, db, 3)
    (raw,) = _sql(db, "SELECT raw FROM samples ORDER BY id DESC LIMIT 1")[0]
    mono = json.loads(raw)["mono"]
    needle = f'"mono":{mono!r}'.encode()
    data = bytearray(db.read_bytes())  # the last connection closed: the WAL is checkpointed
    assert data.count(needle) == 1, "the sample's text is in the file once"
    at = data.index(needle) + len('"mono"')
    data[at] = ord(";")  # "mono";123.4 -- no longer JSON
    db.write_bytes(bytes(data))
    assert _sql(db, "PRAGMA integrity_check") == [("ok",)]  # SQLite cannot see it

    proc = cli.run("report", "--db", str(db), "--no-docker", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    _no_traceback(proc)
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"warning: history {db}: sample #3 is unreadable (its JSON does not parse"
    )
    assert line.endswith("; skipped")
    assert json.loads(proc.stdout)["note"] is None  # rates from the sample before it
    again = cli.run("report", "--db", str(db), "--no-docker", "--quiet")
    assert (again.returncode, again.stderr) == (0, "")  # said once, not every minute


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (
            "UPDATE samples SET raw = json_set(raw, '$.host.cpu.total', 'lots')"
            " WHERE id = (SELECT max(id) FROM samples)",
            "host.cpu.total is 'lots', not a number",
        ),
        (
            "UPDATE samples SET raw = json_set(raw, '$.containers', json('[{\"id\": 7}]'))"
            " WHERE id = (SELECT max(id) FROM samples)",
            "containers[0] has no id",
        ),
        ("UPDATE samples SET ts = 'yesterday' WHERE id = (SELECT max(id) FROM samples)",
         "its time is 'yesterday', not a number"),
        ("UPDATE samples SET raw = '[1, 2]' WHERE id = (SELECT max(id) FROM samples)",
         "it is not a JSON object"),
        ("UPDATE points SET value = 'n/a' WHERE series_id IN"
         " (SELECT id FROM series WHERE metric = 'memory_used_pct')",
         "unreadable value(s) of host memory_used_pct removed"),
        ("UPDATE meta SET value = 'soon' WHERE key = 'last_compact'", None),
        ("INSERT INTO findings VALUES ('h', 'k', 'over-limit', 's', 'x', 1, 1, 1, 0, 'm', NULL, NULL)",
         None),
    ],
)  # fmt: skip
def test_wrong_types_in_rows_never_break_cron(
    cli: Cli, tmp_path: Path, damage: str, said: str | None
) -> None:
    db = tmp_path / "h.sqlite3"
    _runs(cli, db, 14)  # enough points for the anomaly check to read its window
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(damage.replace("'h'", repr(socket.gethostname())))
    conn.close()
    for _ in range(2):
        # Anomalies are judged on every run; no --fail-on, because this host's own CPU
        # can be anomalous while a busy CI machine runs the test.
        proc = cli.run("report", "--db", str(db), "--no-docker", "-q")
        _no_traceback(proc)
        assert proc.returncode == 0, proc.stderr
        if said is not None and _ == 0:
            assert said in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) <= 1, proc.stderr
        if _ == 1:
            assert proc.stderr == "", "said once, not every minute"
    page = cli.run("report", "--db", str(db), "--format", "html")
    assert page.returncode == 0, page.stderr
    _no_traceback(page)


# -------------------------------------------------------------------------- disks


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system of this test's own (tmpfs), always unmounted."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_said_and_the_history_kept(cli: Cli, tmpfs: Path) -> None:
    db = tmpfs / "h.sqlite3"
    _runs(cli, db, 2)
    before = _counts(db)
    subprocess.run(["dd", "if=/dev/zero", f"of={tmpfs}/filler", "bs=64k"], capture_output=True)
    assert os.statvfs(tmpfs).f_bavail == 0
    proc = cli.run("report", "--db", str(db), "--no-docker", "--quiet")
    assert proc.returncode == 2
    _no_traceback(proc)
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: history {db}: ") and "no space left on the device" in line
    assert "not a readable" not in line and "move it aside" not in line
    (tmpfs / "filler").unlink()
    assert _counts(db) == before and _sql(db, "PRAGMA integrity_check") == [("ok",)]
    _runs(cli, db, 1)  # room again: cron goes on
    assert _counts(db)[0] == before[0] + 1


def test_a_read_only_mount_is_said_and_can_still_be_reported_on(cli: Cli, tmpfs: Path) -> None:
    db = tmpfs / "h.sqlite3"
    _runs(cli, db, 3)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    proc = cli.run("report", "--db", str(db), "--no-docker", "--quiet")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: history {db}: cannot ")  # open or record: SQLite's call
    assert line.endswith(
        ": the file system is mounted read-only; use --db for a writable copy, or --no-history"
    )
    # Reading needs no write: the page is drawn from the read-only history.
    page = cli.run("report", "--db", str(db), "--format", "html")
    assert page.returncode == 0, page.stderr
    assert page.stdout.count("<svg") >= 3 and page.stderr == ""


@pytest.fixture
def request_cleanup() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def test_a_history_this_user_cannot_write(
    cli: Cli, tmp_path: Path, request_cleanup: list[Path]
) -> None:
    """A root-owned history used by an unprivileged user (for real: setpriv)."""
    import tempfile

    # pytest's own temp directories are root's alone (0700): this one is visible to all.
    shared = Path(tempfile.mkdtemp(prefix="vots-ops-shared-"))
    request_cleanup.append(shared)
    shared.chmod(0o755)
    db = shared / "h.sqlite3"
    _runs(cli, db, 2)
    db.chmod(0o644)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test as an unprivileged user"
    nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    proc = cli.run("report", "--db", str(db), "--no-docker", "--quiet", prefix=nobody,
                   env={"HOME": str(shared), "XDG_STATE_HOME": str(shared)}, cwd=shared)  # fmt: skip
    assert proc.returncode == 2
    _no_traceback(proc)
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: history {db}: ")
    assert "not writable" in line or "read-only" in line, line
    assert "not a readable" not in line
    # Reading it is allowed: the page is drawn without writing anything.
    page = cli.run("report", "--db", str(db), "--format", "html", prefix=nobody,
                   env={"HOME": str(shared), "XDG_STATE_HOME": str(shared)}, cwd=shared)  # fmt: skip
    assert page.returncode == 0, page.stderr
    assert page.stdout.count("<svg") >= 3


# ------------------------------------------------------------------ standard output


def test_a_full_disk_under_stdout_is_one_line_and_exit_2(cli: Cli) -> None:
    with open("/dev/full", "w") as full:
        proc = cli.run("report", "--no-history", "--no-docker", "--format", "json", stdout=full)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: cannot write to standard output: No space left on device"
        " (the output is incomplete)\n"
    )


@pytest.mark.parametrize("fmt", ["json", "table", "markdown"])
def test_a_closed_pipe_ends_quietly(cli: Cli, fmt: str) -> None:
    read, write = os.pipe()
    os.close(read)  # `| head` that has already gone
    try:
        proc = cli.run("report", "--no-history", "--no-docker", "--format", fmt, stdout=write)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
