"""History store on real SQLite files: round trips, concurrent cron runs, retention,
migrations and the files it must refuse."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ops.errors import EXIT_BAD_INPUT, OpsError, OutputError
from ops.report.history import (
    APPLICATION_ID,
    DAY,
    HOUR,
    MIGRATIONS,
    SCHEMA_VERSION,
    Compaction,
    History,
    HistoryError,
    HistoryTooNewError,
    Point,
    default_db_path,
)
from tests.support.stacks import REPO

T0 = 1_700_000_000 // HOUR * HOUR  # an hour boundary


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sql(path: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# -- paths -------------------------------------------------------------------


def test_default_db_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_db_path() == tmp_path / "state" / "vots-ops" / "history.sqlite3"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", "relative/dir"):  # the XDG spec says to ignore both
        monkeypatch.setenv("XDG_STATE_HOME", value)
        expected = tmp_path / "home" / ".local" / "state" / "vots-ops" / "history.sqlite3"
        assert default_db_path() == expected
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_db_path() == expected


def test_creates_parent_dirs_wal_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "history.sqlite3"
    with History(path) as h:
        conn = h._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert h.stats().schema_version == SCHEMA_VERSION
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _sql(path, "PRAGMA application_id") == [(APPLICATION_ID,)]


# -- round trip --------------------------------------------------------------


def test_record_previous_series_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path, auto_compact=False) as h:
        assert h.previous("vm1") is None
        assert h.series("vm", "cpu") == []
        # Recorded out of order on purpose: reads come back in time order.
        for ts, cpu in ((T0 + 120, 0.3), (T0, 0.1), (T0 + 60, 0.2)):
            h.record(
                ts,
                "vm1",
                {"cpu_ticks": int(ts), "nested": {"a": [1, 2]}},
                [Point("vm", "cpu", cpu), Point("agent-1", "mem_bytes", 1 << 30)],
            )
        h.record(T0 + 30, "vm2", {"cpu_ticks": 7}, [Point("vm", "cpu", 0.9)])

    with History(path, auto_compact=False) as h:  # survives close/reopen
        # The previous sample is the last one recorded, not the latest timestamp: one
        # sample from a clock far ahead must not hide every later one.
        prev = h.previous("vm1")
        assert prev is not None and prev.clock == "ok"
        assert (prev.ts, prev.raw) == (T0 + 60, {"cpu_ticks": T0 + 60, "nested": {"a": [1, 2]}})
        assert h.previous("vm2")[:2] == (T0 + 30, {"cpu_ticks": 7})
        assert h.previous("nope") is None
        assert h.newest_ts("vm1") == T0 + 120 and h.newest_ts() == T0 + 120

        assert h.series("vm", "cpu", host="vm1") == [(T0, 0.1), (T0 + 60, 0.2), (T0 + 120, 0.3)]
        assert h.series("vm", "cpu", host="vm2") == [(T0 + 30, 0.9)]
        assert h.series("vm", "cpu") == [(T0, 0.1), (T0 + 30, 0.9), (T0 + 60, 0.2), (T0 + 120, 0.3)]
        assert h.series("vm", "cpu", since=T0 + 30, until=T0 + 60) == [
            (T0 + 30, 0.9),
            (T0 + 60, 0.2),
        ]
        assert h.series("agent-1", "mem_bytes") == [
            (ts, float(1 << 30)) for ts in (T0, T0 + 60, T0 + 120)
        ]
        assert h.series("vm", "mem_bytes") == []

        assert h.scopes() == ["agent-1", "vm"]
        assert h.scopes(host="vm2") == ["vm"]
        assert h.metrics() == ["cpu", "mem_bytes"]
        assert h.metrics(scope="vm") == ["cpu"]
        assert h.metrics(scope="agent-1", host="vm2") == []
        assert h.hosts() == ["vm1", "vm2"]

        stats = h.stats()
        assert (stats.samples, stats.points, stats.series, stats.hourly) == (4, 7, 3, 0)
        assert stats.file_bytes > 0


def test_bad_sample_stores_nothing(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        bad = [
            (float("nan"), "vm1", {}, []),
            (T0, "", {}, []),
            (T0, "vm1", {"x": object()}, []),
            (T0, "vm1", {"x": float("inf")}, []),
            (T0, "vm1", {}, [Point("vm", "cpu", float("nan"))]),
            (T0, "vm1", {}, [Point("vm", "cpu", 1), Point("vm", "cpu", 2)]),
        ]
        for sample in bad:
            with pytest.raises((ValueError, TypeError)):
                h.record(*sample)
        assert h.stats().samples == 0
        assert h.stats().series == 0


# -- concurrency -------------------------------------------------------------

WRITERS, PER_WRITER, POINTS_PER_SAMPLE = 20, 25, 4

WRITER_CODE = textwrap.dedent(
    """
    import sys, time
    from ops.report.history import History, Point

    path, writer, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    reopen = writer % 2 == 1  # odd writers open the file per sample, like cron does
    while time.time() < start_at:  # every writer creates/opens the new file at once
        time.sleep(0.001)

    def points(seq):
        return [Point("vm", "cpu", seq), Point("vm", "load", writer),
                Point(f"c{writer}", "mem", seq * 10), Point(f"c{writer}", "cpu", 0.5)]

    h = None if reopen else History(path)
    for seq in range(int(sys.argv[4])):
        ts = time.time()
        raw = {"writer": writer, "seq": seq}
        if reopen:
            with History(path) as h1:
                h1.record(ts, f"w{writer}", raw, points(seq))
        else:
            h.record(ts, f"w{writer}", raw, points(seq))
    if h is not None:
        h.close()
    """
)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.sqlite3"  # does not exist yet: created concurrently
    start_at = time.time() + 1.5  # after every interpreter has started
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_CODE, str(path), str(w), str(start_at), str(PER_WRITER)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    failures = []
    for w, proc in enumerate(procs):
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(f"writer {w} exited {proc.returncode}:\n{err}")
    assert not failures, "\n".join(failures)

    assert _sql(path, "PRAGMA integrity_check") == [("ok",)]
    assert _sql(path, "PRAGMA foreign_key_check") == []
    raws = [json.loads(r) for (r,) in _sql(path, "SELECT raw FROM samples")]
    assert len(raws) == WRITERS * PER_WRITER
    tags = sorted((r["writer"], r["seq"]) for r in raws)
    assert tags == [(w, s) for w in range(WRITERS) for s in range(PER_WRITER)]  # none lost or twice
    assert _sql(path, "SELECT count(*) FROM points") == [
        (WRITERS * PER_WRITER * POINTS_PER_SAMPLE,)
    ]
    # Every writer's points landed on its own sample and its own host's series.
    mismatched = _sql(
        path,
        "SELECT count(*) FROM points p JOIN samples s ON s.id = p.sample_id"
        " JOIN series r ON r.id = p.series_id WHERE r.host != s.host OR p.ts != s.ts",
    )
    assert mismatched == [(0,)]
    with History(path, auto_compact=False) as h:
        for w in range(WRITERS):
            assert [v for _, v in h.series("vm", "cpu", host=f"w{w}")] == list(range(PER_WRITER))
            assert h.series(f"c{w}", "mem", host=f"w{w}")[-1][1] == (PER_WRITER - 1) * 10
        assert h.stats().series == WRITERS * 4


# -- retention and downsampling ---------------------------------------------

DAYS = 30
MINUTES = DAYS * 24 * 60


def _month_of_minutes() -> list[tuple[float, str, dict, list[Point]]]:
    """Per-minute samples for 30 days, 3 metrics with a known hourly pattern:
    cpu = minute of the hour (0..59), load = hour index, mem = 100 or 300 alternately."""
    samples = []
    for i in range(MINUTES):
        ts = T0 + 60 * i
        samples.append(
            (
                ts,
                "vm1",
                {"cpu_ticks": i * 250, "net_rx": i * 1_000_000},
                [
                    Point("vm", "cpu", i % 60),
                    Point("vm", "load", i // 60),
                    Point("vm", "mem", 100 if i % 2 == 0 else 300),
                ],
            )
        )
    return samples


def _dump(path: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    return (
        _sql(path, "SELECT * FROM hourly ORDER BY series_id, hour_ts"),
        _sql(path, "SELECT id, ts, host, raw FROM samples ORDER BY id"),
        _sql(path, "SELECT * FROM points ORDER BY sample_id, series_id"),
    )


def _vacuumed_size(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return path.stat().st_size


def test_compact_month_of_minutes(tmp_path: Path, record_property) -> None:
    path = tmp_path / "h.sqlite3"
    now = T0 + DAYS * DAY
    with History(path, auto_compact=False) as h:
        h._record_many(_month_of_minutes())
        assert h.stats().points == MINUTES * 3
    raw_size = _vacuumed_size(path)

    with History(path, auto_compact=False) as h:
        done = h.compact(now)  # raw_days=7, hourly_days=90
        cutoff = now - 7 * DAY
        folded_hours = (DAYS - 7) * 24
        assert done == Compaction(
            points=folded_hours * 60 * 3,
            samples=folded_hours * 60,
            hourly_written=folded_hours * 3,
            hourly_deleted=0,
            series_deleted=0,
        )
        stats = h.stats()
        assert stats.samples == 7 * 24 * 60
        assert stats.points == 7 * 24 * 60 * 3
        assert stats.hourly == folded_hours * 3
        assert stats.last_compact == now
        assert h.previous("vm1")[:2] == (
            now - 60,
            {"cpu_ticks": (MINUTES - 1) * 250, "net_rx": (MINUTES - 1) * 1_000_000},
        )

    assert _sql(path, "SELECT min(ts) FROM samples") == [(cutoff,)]
    assert _sql(path, "SELECT min(ts) FROM points") == [(cutoff,)]
    rows = _sql(
        path,
        "SELECT s.metric, h.hour_ts, h.count, h.mean, h.min, h.max, h.p95"
        " FROM hourly h JOIN series s ON s.id = h.series_id ORDER BY s.metric, h.hour_ts",
    )
    by_metric: dict[str, list[tuple]] = {}
    for metric, *rest in rows:
        by_metric.setdefault(metric, []).append(tuple(rest))
    hours = [T0 + k * HOUR for k in range(folded_hours)]
    assert by_metric["cpu"] == [(t, 60, 29.5, 0.0, 59.0, 56.0) for t in hours]  # nearest-rank p95
    assert by_metric["load"] == [
        (t, 60, float(k), float(k), float(k), float(k)) for k, t in enumerate(hours)
    ]
    assert by_metric["mem"] == [(t, 60, 200.0, 100.0, 300.0, 300.0) for t in hours]

    with History(path, auto_compact=False) as h:
        cpu = h.series("vm", "cpu")
        assert len(cpu) == folded_hours + 7 * 24 * 60
        assert cpu[:2] == [(float(T0), 29.5), (float(T0 + HOUR), 29.5)]  # hourly means first
        assert cpu[folded_hours] == (cutoff, 0.0)  # then raw points
        assert cpu == sorted(cpu)
        assert h.series("vm", "load", since=cutoff - 2 * HOUR, until=cutoff + 60) == [
            (cutoff - 2 * HOUR, folded_hours - 2.0),
            (cutoff - HOUR, folded_hours - 1.0),
            (cutoff, float(folded_hours)),
            (cutoff + 60, float(folded_hours)),
        ]

        before = _dump(path)
        assert h.compact(now) == Compaction(hourly_deleted=0, series_deleted=0)
        assert _dump(path) == before  # a second run changes nothing

        # Hourly retention: keep 10 days of hourly rows, i.e. 3 days older than raw.
        done = h.compact(now, raw_days=7, hourly_days=10)
        assert done.hourly_deleted == (DAYS - 10) * 24 * 3
        assert _sql(path, "SELECT min(hour_ts), count(*) FROM hourly") == [
            (now - 10 * DAY, 3 * 24 * 3)
        ]
    assert _sql(path, "PRAGMA integrity_check") == [("ok",)]

    compact_size = _vacuumed_size(path)
    record_property("raw_30d_bytes", raw_size)
    record_property("compacted_bytes", compact_size)
    print(
        f"\n30 days x 3 metrics per minute: raw {raw_size} B, after compact+vacuum {compact_size} B"
    )
    # Generous bounds so a regression in the layout (e.g. strings in every row) shows.
    assert raw_size < 12_000_000
    assert compact_size < raw_size / 2


def test_late_sample_for_folded_hour_merges_exactly(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite3", auto_compact=False) as h:
        h._record_many((T0 + 60 * i, "vm1", {}, [Point("vm", "cpu", i)]) for i in range(60))
        h.compact(T0 + 8 * DAY)
        h.record(T0 + 30, "vm1", {}, [Point("vm", "cpu", 200)])  # arrives late
        h.compact(T0 + 8 * DAY)
        row = h._conn.execute("SELECT count, mean, min, max, p95 FROM hourly").fetchall()
    assert row == [(61, pytest.approx((59 * 60 / 2 + 200) / 61), 0.0, 200.0, 200.0)]


def test_concurrent_compactions_never_double_count(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path, auto_compact=False) as h:
        # 4 days per minute, 2 metrics: 3 days to fold with raw_days=1.
        h._record_many(
            (T0 + 60 * i, "vm1", {}, [Point("vm", "cpu", i % 60), Point("vm", "mem", 1.0)])
            for i in range(4 * 24 * 60)
        )
    errors: list[BaseException] = []
    results: list[Compaction] = []

    def run() -> None:
        try:
            with History(path, auto_compact=False, raw_days=1) as h:
                results.append(h.compact(T0 + 4 * DAY, raw_days=1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.points for r in results) == 3 * 24 * 60 * 2  # folded once in total
    assert _sql(path, "SELECT count(*), sum(count), min(count), max(count) FROM hourly") == [
        (3 * 24 * 2, 3 * 24 * 60 * 2, 60, 60)
    ]
    assert _sql(path, "SELECT count(*) FROM points") == [(24 * 60 * 2,)]


def test_record_compacts_at_most_once_an_hour(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path, raw_days=1, hourly_days=2) as h:
        h._record_many(
            (T0 + 60 * i, "vm1", {}, [Point("vm", "cpu", 1.0)]) for i in range(2 * 24 * 60)
        )
        now = T0 + 2 * DAY
        h.record(now, "vm1", {}, [Point("vm", "cpu", 1.0)])  # first record compacts
        assert h.stats().last_compact == now
        assert h.stats().samples == 24 * 60 + 1
        h._record_many(
            (T0 + 2 * DAY + 60 * i, "vm1", {}, [Point("vm", "cpu", 1.0)]) for i in range(1, 30)
        )
        h.record(now + 1800, "vm1", {}, [Point("vm", "cpu", 1.0)])  # within the hour: no work
        assert h.stats().last_compact == now
        h.record(now + HOUR, "vm1", {}, [Point("vm", "cpu", 1.0)])
        assert h.stats().last_compact == now + HOUR
        assert _sql(path, "SELECT min(ts) FROM samples") == [(T0 + DAY + HOUR,)]
        # A future-dated sample does not compact relative to the future.
        h.record(time.time() + 365 * DAY, "vm1", {}, [Point("vm", "cpu", 1.0)])
        assert h.stats().last_compact <= time.time()


# -- migrations and refusals -------------------------------------------------


def test_migrates_version_1_file_with_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO samples (id, ts, host, raw) VALUES (1, ?, 'vm1', '{\"c\":5}')", (T0,))
    conn.execute("INSERT INTO series (id, host, scope, metric) VALUES (1, 'vm1', 'vm', 'cpu')")
    conn.execute("INSERT INTO points VALUES (1, 1, ?, 0.25)", (T0,))
    conn.execute("INSERT INTO hourly VALUES (1, ?, 60, 0.5, 0.1, 0.9)", (T0 - HOUR,))
    conn.execute("COMMIT")
    conn.close()

    with History(path, auto_compact=False) as h:
        assert h.stats().schema_version == SCHEMA_VERSION == 3
        assert h.previous("vm1")[:2] == (T0, {"c": 5})
        assert h.series("vm", "cpu") == [(T0 - HOUR, 0.5), (T0, 0.25)]
        h.record(T0 + 60, "vm1", {"c": 6}, [Point("vm", "cpu", 0.75)])
    assert _sql(path, "SELECT hour_ts, count, p95 FROM hourly") == [(T0 - HOUR, 60, None)]
    assert _sql(path, "PRAGMA integrity_check") == [("ok",)]
    with History(path, auto_compact=False) as h:  # reopening at the latest version is a no-op
        assert h.series("vm", "cpu") == [(T0 - HOUR, 0.5), (T0, 0.25), (T0 + 60, 0.75)]


def test_refuses_newer_schema_without_touching_it(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with History(path) as h:
        h.record(T0, "vm1", {}, [Point("vm", "cpu", 1.0)])
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(HistoryTooNewError) as info:
        History(path)
    assert str(info.value).startswith(f"history {path} was written by a newer vots-ops")
    assert isinstance(info.value, OpsError) and info.value.exit_code == EXIT_BAD_INPUT
    assert _digest(path) == before
    assert _sql(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is a log file, not a database\n" * 200)
    before = _digest(path)
    with pytest.raises(HistoryError) as info:
        History(path)
    assert str(path) in str(info.value)
    assert "is not a SQLite database" in str(info.value) and "move it aside" not in str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT == 2
    assert _digest(path) == before


def test_refuses_another_applications_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE samples (x)")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(HistoryError, match="something else") as info:
        History(path)
    assert str(path) in str(info.value)
    assert _digest(path) == before


def test_unwritable_location_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where a directory should be\n")
    path = blocker / "vots-ops" / "history.sqlite3"
    with pytest.raises(OutputError) as info:
        History(path)
    assert str(info.value).startswith(f"cannot write {path}: ")
    assert info.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(OutputError, match="is a directory"):
        History(tmp_path)


def test_locked_file_waits_then_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ops.report.history as history

    path = tmp_path / "h.sqlite3"
    History(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holding the lock
    try:
        monkeypatch.setattr(history, "BUSY_TIMEOUT_S", 0.3)
        with History(path, auto_compact=False) as h:
            started = time.monotonic()
            with pytest.raises(HistoryError, match="locked") as info:
                h.record(T0, "vm1", {}, [Point("vm", "cpu", 1.0)])
            assert time.monotonic() - started >= 0.25  # it waited rather than failing at once
            assert str(path) in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with History(path, auto_compact=False) as h:
        assert h.stats().samples == 0


def test_another_applications_file_is_never_blamed_on_a_newer_vots_ops(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    for readonly in (False, True):
        with pytest.raises(HistoryError, match="of something else") as info:
            History(path, readonly=readonly)
        assert "newer vots-ops" not in str(info.value)


def test_a_failed_first_open_leaves_no_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    (tmp_path / "h.sqlite3-wal").mkdir()  # SQLite cannot make its WAL: the open fails
    with pytest.raises(HistoryError):
        History(path)
    assert not path.exists()
