"""Utilisation history in one SQLite file, cheap enough for a cron run every minute.

Every cron run opens the file, reads the previous sample's counters (rates need
two samples and a cron run never sleeps), records one sample and closes. Raw
points are kept for ``raw_days``; older ones are folded into hourly aggregates
kept for ``hourly_days``, so a year of per-minute samples does not become
half a million rows per metric.

Safety: WAL mode (readers never block the writer), a busy timeout so
overlapping cron runs wait instead of failing, every write in one
``BEGIN IMMEDIATE`` transaction, and compaction that aggregates and deletes the
same rows in one transaction, so it can never count a point twice.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from ops.errors import OpsError, OutputError

HOUR = 3600
DAY = 86400
BUSY_TIMEOUT_S = 10.0
# Opportunistic compaction from record() runs at most this often.
COMPACT_EVERY_S = HOUR
# Backlogs are compacted a day per transaction so other writers get the lock in between.
COMPACT_CHUNK_S = DAY
# PRAGMA application_id, "VOTS": tells our files apart from other SQLite files.
APPLICATION_ID = 0x564F5453

# Schema migrations, applied in order inside one transaction; index i takes the
# file from user_version i to i + 1. Append only: never edit a released entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: initial schema.
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE samples ("
        " id INTEGER PRIMARY KEY,"
        " ts REAL NOT NULL,"
        " host TEXT NOT NULL,"
        " raw TEXT NOT NULL)",
        "CREATE INDEX samples_host_ts ON samples (host, ts)",
        "CREATE INDEX samples_ts ON samples (ts)",
        # One row per (host, scope, metric): points and hourly rows carry a small
        # integer instead of repeating three strings in every row and index entry.
        "CREATE TABLE series ("
        " id INTEGER PRIMARY KEY,"
        " host TEXT NOT NULL,"
        " scope TEXT NOT NULL,"
        " metric TEXT NOT NULL,"
        " UNIQUE (host, scope, metric))",
        "CREATE INDEX series_scope_metric ON series (scope, metric)",
        # ts is copied from the sample so range queries need no join.
        "CREATE TABLE points ("
        " sample_id INTEGER NOT NULL REFERENCES samples (id) ON DELETE CASCADE,"
        " series_id INTEGER NOT NULL REFERENCES series (id),"
        " ts REAL NOT NULL,"
        " value REAL NOT NULL,"
        " PRIMARY KEY (sample_id, series_id)) WITHOUT ROWID",
        "CREATE INDEX points_series_ts ON points (series_id, ts)",
        "CREATE TABLE hourly ("
        " series_id INTEGER NOT NULL REFERENCES series (id),"
        " hour_ts INTEGER NOT NULL,"
        " count INTEGER NOT NULL,"
        " mean REAL NOT NULL,"
        " min REAL NOT NULL,"
        " max REAL NOT NULL,"
        " PRIMARY KEY (series_id, hour_ts)) WITHOUT ROWID",
    ),
    # 2: the hourly 95th percentile, for right-sizing on the tail rather than the
    # mean. Hours aggregated before this migration keep p95 NULL (unknown).
    ("ALTER TABLE hourly ADD COLUMN p95 REAL",),
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(OpsError):
    """The history file cannot be used: not SQLite, not ours, locked, disk full, ..."""


class HistoryTooNewError(HistoryError):
    """The file's schema is newer than this code; refusing beats guessing."""


class Point(NamedTuple):
    """One measurement of a sample: ``scope`` is "vm" or a container, ``metric`` a name."""

    scope: str
    metric: str
    value: float


@dataclass(frozen=True)
class Compaction:
    """What one ``compact`` did; all zeros when there was nothing to do."""

    points: int = 0  # raw points folded into hourly rows (and deleted)
    samples: int = 0  # raw samples deleted with them
    hourly_written: int = 0  # hourly rows inserted or merged into
    hourly_deleted: int = 0  # hourly rows past hourly_days
    series_deleted: int = 0  # series left with no data


@dataclass(frozen=True)
class Stats:
    """Row counts and file sizes, for ``report`` to show what history costs."""

    path: Path
    schema_version: int
    samples: int
    points: int
    hourly: int
    series: int
    file_bytes: int
    wal_bytes: int
    last_compact: float | None


def default_db_path() -> Path:
    """``$XDG_STATE_HOME/vots-ops/history.sqlite3`` (state, not cache: losing it loses history)."""
    state = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore relative values.
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "vots-ops" / "history.sqlite3"


def _floor_hour(ts: float) -> int:
    return math.floor(ts / HOUR) * HOUR


def _p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile of sorted ``values``: always an observed value."""
    return values[max(0, math.ceil(0.95 * len(values)) - 1)]


class History:
    """An open history file; use as a context manager so the connection is closed.

    ``raw_days`` and ``hourly_days`` are the retention that ``record``'s
    opportunistic compaction applies; ``auto_compact=False`` turns it off.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        raw_days: float = 7,
        hourly_days: float = 90,
        auto_compact: bool = True,
    ) -> None:
        _check_retention(raw_days, hourly_days)
        self.path = Path(path) if path is not None else default_db_path()
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self.auto_compact = auto_compact
        self._conn = self._connect()
        try:
            self._prepare()
        except BaseException:
            self._conn.close()
            raise

    # -- opening -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            from ops.files import not_a_directory

            blocker = not_a_directory(self.path.parent)
            if blocker is not None:
                raise OutputError(f"cannot write {self.path}: {blocker} is not a directory")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        if self.path.is_dir():
            raise OutputError(f"cannot write {self.path}: is a directory")
        try:
            # isolation_level=None: no implicit transactions; we BEGIN ourselves.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from exc
        return conn

    def _prepare(self) -> None:
        """Check the file is ours and not newer, then WAL, pragmas and migrations."""
        with self._guard("cannot open"):
            conn = self._conn
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            try:
                version = self._check_file()
            except sqlite3.DatabaseError as exc:
                if _is_busy(exc):
                    raise
                raise HistoryError(
                    f"history {self.path} is not a readable SQLite database ({exc}); "
                    "move it aside or choose another file"
                ) from exc
            # Only now write anything: a newer or foreign file is left untouched.
            self._enable_wal()
            # NORMAL in WAL mode: a power cut may lose the last commits, never corrupts.
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                self._migrate()

    def _enable_wal(self) -> None:
        """Switch to WAL once per file (the mode is stored in it).

        The switch needs an exclusive lock and SQLite reports "locked" at once
        instead of calling the busy handler, so retry until the busy timeout:
        twenty cron runs creating the file together must all succeed.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    # Returns the old mode where WAL is impossible (no shared memory,
                    # e.g. some network filesystems): still safe, just less concurrent.
                    self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))  # jitter: retries do not collide

    def _check_file(self) -> int:
        # One statement, so one snapshot: read separately, a concurrent first run's
        # migration could land in between and make a fresh file look foreign.
        version, app, tables = self._conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT application_id FROM pragma_application_id),"
            " (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        self._refuse_newer(version)
        if (version == 0 and tables) or (version > 0 and app != APPLICATION_ID):
            raise HistoryError(
                f"history {self.path} is a SQLite database of something else "
                f"(application_id {app:#x}, schema version {version}); choose another file"
            )
        return version

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryTooNewError(
                f"history {self.path} was written by a newer vots-ops (schema version "
                f"{version}, this one knows up to {SCHEMA_VERSION}); upgrade vots-ops"
            )

    def _migrate(self) -> None:
        """Apply the missing migrations in one transaction; concurrent openers wait."""
        with self._transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._refuse_newer(version)
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """SQLite's runtime failures (locked, full, read-only, malformed) → one-line errors."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # our bug, not the environment's: keep the traceback
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if _is_busy(exc):
                text += f" (another process kept it busy; waited {BUSY_TIMEOUT_S:g} s)"
            raise HistoryError(f"history {self.path}: {doing}: {text}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout),
        so a transaction never fails half-way because another writer got there first."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def close(self) -> None:
        """Close the connection; the last closer checkpoints the WAL into the file."""
        self._conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing -------------------------------------------------------------

    def record(self, ts: float, host: str, raw: Mapping[str, Any], points: Iterable[Point]) -> int:
        """Store one sample and its points in one transaction; return the sample id.

        ``raw`` holds the cumulative counters the next run needs for rates. Then,
        at most once per hour, compacts old points so cron needs no second job; if
        that compaction fails the sample is already stored and the error is raised.
        """
        row = _validate(ts, host, raw, points)
        with self._guard("cannot record"), self._transaction() as conn:
            sample_id = self._insert(conn, row, {})
        if self.auto_compact:
            # Never compact relative to a future-dated sample: that would fold
            # (and, past hourly_days, delete) history on one bad clock reading.
            self._maybe_compact(min(row[0], time.time()))
        return sample_id

    def _record_many(
        self, samples: Iterable[tuple[float, str, Mapping[str, Any], Iterable[Point]]]
    ) -> list[int]:
        """Bulk insert in one transaction, without compaction (tests, imports)."""
        rows = [_validate(*sample) for sample in samples]
        with self._guard("cannot record"), self._transaction() as conn:
            cache: dict[tuple[str, str, str], int] = {}
            return [self._insert(conn, row, cache) for row in rows]

    def _insert(self, conn: sqlite3.Connection, row: _Row, cache: dict[Any, int]) -> int:
        ts, host, raw_json, values = row
        cur = conn.execute(
            "INSERT INTO samples (ts, host, raw) VALUES (?, ?, ?)", (ts, host, raw_json)
        )
        sample_id = cur.lastrowid
        assert sample_id is not None
        conn.executemany(
            "INSERT INTO points (sample_id, series_id, ts, value) VALUES (?, ?, ?, ?)",
            [
                (sample_id, self._series_id(conn, cache, host, scope, metric), ts, value)
                for scope, metric, value in values
            ],
        )
        return sample_id

    @staticmethod
    def _series_id(
        conn: sqlite3.Connection, cache: dict[Any, int], host: str, scope: str, metric: str
    ) -> int:
        # The cache lives for one transaction only: compaction in another process
        # may delete an unused series between transactions.
        key = (host, scope, metric)
        if key not in cache:
            found = conn.execute(
                "SELECT id FROM series WHERE host = ? AND scope = ? AND metric = ?", key
            ).fetchone()
            if found is None:
                found = conn.execute(
                    "INSERT INTO series (host, scope, metric) VALUES (?, ?, ?) RETURNING id", key
                ).fetchone()
            cache[key] = found[0]
        return cache[key]

    # -- compaction ----------------------------------------------------------

    def _maybe_compact(self, now: float) -> None:
        """Compact if the last compaction is an hour away from ``now``.

        The claim (setting last_compact) is taken under the write lock first, so
        twenty overlapping cron runs do the work once, not twenty times.
        """
        with self._guard("cannot compact"):
            last = self._last_compact()
            # abs(): a clock that jumped back must not postpone compaction for ever.
            if last is not None and abs(now - last) < COMPACT_EVERY_S:
                return
            with self._transaction():
                last = self._last_compact()  # re-read under the lock
                if last is not None and abs(now - last) < COMPACT_EVERY_S:
                    return
                self._set_last_compact(now)
        self.compact(now, self.raw_days, self.hourly_days)

    def _last_compact(self) -> float | None:
        found = self._conn.execute("SELECT value FROM meta WHERE key = 'last_compact'").fetchone()
        return float(found[0]) if found else None

    def compact(self, now: float, raw_days: float = 7, hourly_days: float = 90) -> Compaction:
        """Fold raw points older than ``raw_days`` into hourly rows and delete them;
        delete hourly rows older than ``hourly_days``.

        Only whole hours are folded (the cut-off is rounded down to the hour), and
        each transaction aggregates and deletes the same rows, so running twice or
        concurrently never counts a point twice. Backlogs go a day per transaction,
        so overlapping cron runs are not kept waiting past the busy timeout.
        """
        _check_retention(raw_days, hourly_days)
        cutoff = _floor_hour(now - raw_days * DAY)
        hourly_cutoff = _floor_hour(now - hourly_days * DAY)
        done = {"points": 0, "samples": 0, "hourly_written": 0}
        with self._guard("cannot compact"):
            while True:
                with self._transaction() as conn:
                    oldest = conn.execute(
                        "SELECT min(ts) FROM samples WHERE ts < ?", (cutoff,)
                    ).fetchone()[0]
                    if oldest is None:
                        break
                    upto = min(cutoff, _floor_hour(oldest) + COMPACT_CHUNK_S)
                    for key, value in self._fold(conn, oldest, upto).items():
                        done[key] += value
            with self._transaction() as conn:
                hourly_deleted = conn.execute(  # per series, so the primary key is used
                    "DELETE FROM hourly WHERE series_id IN (SELECT id FROM series) AND hour_ts < ?",
                    (hourly_cutoff,),
                ).rowcount
                series_deleted = conn.execute(
                    "DELETE FROM series WHERE"
                    " NOT EXISTS (SELECT 1 FROM points WHERE series_id = series.id) AND"
                    " NOT EXISTS (SELECT 1 FROM hourly WHERE series_id = series.id)"
                ).rowcount
                self._set_last_compact(now)
        return Compaction(hourly_deleted=hourly_deleted, series_deleted=series_deleted, **done)

    def _set_last_compact(self, now: float) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('last_compact', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (repr(float(now)),),
        )

    @staticmethod
    def _fold(conn: sqlite3.Connection, lo: float, hi: float) -> dict[str, int]:
        """Aggregate the samples in [lo, hi) into hourly rows, then delete them."""
        groups: dict[tuple[int, int], list[float]] = {}
        rows = conn.execute(
            "SELECT p.series_id, p.ts, p.value FROM samples AS s"
            " JOIN points AS p ON p.sample_id = s.id WHERE s.ts >= ? AND s.ts < ?",
            (lo, hi),
        )
        npoints = 0
        for series_id, ts, value in rows:
            groups.setdefault((series_id, _floor_hour(ts)), []).append(value)
            npoints += 1
        aggregates = []
        for (series_id, hour_ts), values in groups.items():
            values.sort()
            mean = math.fsum(values) / len(values)
            aggregates.append(
                (series_id, hour_ts, len(values), mean, values[0], values[-1], _p95(values))
            )
        # An hour that already has a row (a late sample for a folded hour) is merged:
        # count, mean, min and max stay exact; p95 becomes max of the two, an upper bound.
        conn.executemany(
            "INSERT INTO hourly (series_id, hour_ts, count, mean, min, max, p95)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (series_id, hour_ts) DO UPDATE SET"
            " count = count + excluded.count,"
            " mean = (mean * count + excluded.mean * excluded.count) / (count + excluded.count),"
            " min = min(min, excluded.min),"
            " max = max(max, excluded.max),"
            " p95 = max(p95, excluded.p95)",
            aggregates,
        )
        nsamples = conn.execute(
            "DELETE FROM samples WHERE ts >= ? AND ts < ?", (lo, hi)
        ).rowcount  # points go with them: ON DELETE CASCADE
        return {"points": npoints, "samples": nsamples, "hourly_written": len(aggregates)}

    # -- reading -------------------------------------------------------------

    def previous(
        self, host: str, before_ts: float | None = None
    ) -> tuple[float, dict[str, Any]] | None:
        """The latest sample of ``host`` (strictly before ``before_ts``): its time and raw
        counters, so this run can compute rates without sleeping between two reads."""
        sql = "SELECT ts, raw FROM samples WHERE host = ?"
        args: list[Any] = [host]
        if before_ts is not None:
            sql += " AND ts < ?"
            args.append(before_ts)
        sql += " ORDER BY ts DESC, id DESC LIMIT 1"
        with self._guard("cannot read"):
            found = self._conn.execute(sql, args).fetchone()
        return (found[0], json.loads(found[1])) if found else None

    def series(
        self,
        scope: str,
        metric: str,
        since: float | None = None,
        until: float | None = None,
        host: str | None = None,
    ) -> list[tuple[float, float]]:
        """``(ts, value)`` pairs in time order, ``since <= ts <= until``: raw points where
        they are kept, hourly means (at the start of the hour) where they were folded.

        Compaction deletes what it folds, so the two never cover the same points.
        With no ``host``, every host's points are merged.
        """
        where = "scope = ? AND metric = ?"
        args: list[Any] = [scope, metric]
        if host is not None:
            where += " AND host = ?"
            args.append(host)
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        sql = (
            f"WITH s AS (SELECT id FROM series WHERE {where})"
            " SELECT ts, value FROM points"
            " WHERE series_id IN (SELECT id FROM s) AND ts >= ? AND ts <= ?"
            " UNION ALL"
            " SELECT CAST(hour_ts AS REAL), mean FROM hourly"
            " WHERE series_id IN (SELECT id FROM s) AND hour_ts >= ? AND hour_ts <= ?"
            " ORDER BY 1, 2"
        )
        with self._guard("cannot read"):
            # One statement, so one consistent snapshot even while a compaction commits.
            return [
                (float(ts), float(value))
                for ts, value in self._conn.execute(sql, [*args, lo, hi, lo, hi])
            ]

    def scopes(self, host: str | None = None) -> list[str]:
        """Scopes with data ("vm", container names, ...), sorted."""
        sql, args = "SELECT DISTINCT scope FROM series", []
        if host is not None:
            sql, args = sql + " WHERE host = ?", [host]
        with self._guard("cannot read"):
            return [row[0] for row in self._conn.execute(sql + " ORDER BY scope", args)]

    def metrics(self, scope: str | None = None, host: str | None = None) -> list[str]:
        """Metric names with data, optionally within one scope and host, sorted."""
        clauses, args = [], []
        for column, value in (("scope", scope), ("host", host)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT DISTINCT metric FROM series{where} ORDER BY metric"
        with self._guard("cannot read"):
            return [row[0] for row in self._conn.execute(sql, args)]

    def hosts(self) -> list[str]:
        """Hosts with data, sorted (one per file unless files are merged)."""
        with self._guard("cannot read"):
            return [r[0] for r in self._conn.execute("SELECT DISTINCT host FROM series ORDER BY 1")]

    def stats(self) -> Stats:
        """Row counts and the size of the file and its WAL."""
        conn = self._conn
        with self._guard("cannot read"):
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM points),"
                " (SELECT count(*) FROM hourly), (SELECT count(*) FROM series)"
            ).fetchone()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            last = self._last_compact()
        wal = self.path.with_name(self.path.name + "-wal")
        return Stats(
            path=self.path,
            schema_version=version,
            samples=counts[0],
            points=counts[1],
            hourly=counts[2],
            series=counts[3],
            file_bytes=self.path.stat().st_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            last_compact=last,
        )


_Row = tuple[float, str, str, list[tuple[str, str, float]]]


def _is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _check_retention(raw_days: float, hourly_days: float) -> None:
    if not (0 <= raw_days <= hourly_days):
        raise ValueError(
            f"retention needs 0 <= raw_days <= hourly_days (got {raw_days}, {hourly_days})"
        )


def _validate(ts: float, host: str, raw: Mapping[str, Any], points: Iterable[Point]) -> _Row:
    """Refuse bad input before the transaction, so a bad sample stores nothing."""
    ts = float(ts)
    if not math.isfinite(ts):
        raise ValueError(f"sample time must be finite (got {ts})")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string (got {host!r})")
    raw_json = json.dumps(dict(raw), allow_nan=False, separators=(",", ":"), sort_keys=True)
    values: list[tuple[str, str, float]] = []
    seen: set[tuple[str, str]] = set()
    for scope, metric, value in points:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{scope}/{metric}: value must be finite (got {value})")
        if (scope, metric) in seen:
            raise ValueError(f"{scope}/{metric}: twice in one sample")
        seen.add((scope, metric))
        values.append((scope, metric, value))
    return ts, host, raw_json, values
