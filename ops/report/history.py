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

Faults of real machines:

* *Clocks.* The previous sample is the last one *recorded* (insertion order),
  never the one with the largest timestamp, so one sample dated in the future
  cannot hide every later one. Each sample is checked against the last trusted
  one: within one boot (the kernel's ``boot_id``) the monotonic clock says when
  it should be, and a wall clock more than ``CLOCK_STEP_S`` away from that (or,
  across a reboot, more than ``CLOCK_SLACK_S`` ahead of or behind the history)
  marks the sample ``ahead``/``behind``. Such a sample is stored (its counters still give
  rates) but hidden from every series, and nothing is compacted or pruned while
  the clock is in doubt: retention is judged against the newest *trusted*
  sample, never the wall clock of one run. When a trusted sample of the same boot
  arrives (NTP fixed the clock), the flagged ones are re-dated from the monotonic
  clock; a clock that stays consistent for ``CLOCK_TRUST_AFTER_S`` is taken as
  the time.
* *Damaged rows.* A raw sample whose JSON does not parse (or that a caller's
  check rejects) is skipped with a one-line warning and marked unreadable, so
  the warning is not repeated every minute; a point or aggregate that is not a
  finite number carries nothing and is deleted, with one warning (read-only:
  skipped). Nothing here raises for a row's content.
* *The file system.* Full disks, read-only mounts and read-only files are told
  apart from files that are not SQLite (``HistoryError`` says which, and what to
  do). ``History(path, readonly=True)`` opens without writing anything, so a
  snapshot or a read-only mount can be reported on. A SQLite file of another
  application (another ``application_id``, or tables of its own) is refused
  before anything is written to it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from ops.errors import HistoryError, OutputError
from ops.units import format_utc

HOUR = 3600
DAY = 86400
BUSY_TIMEOUT_S = 10.0
# Opportunistic compaction from record() runs at most this often.
COMPACT_EVERY_S = HOUR
# Backlogs are compacted a day per transaction so other writers get the lock in between.
COMPACT_CHUNK_S = DAY
# PRAGMA application_id, "VOTS": tells our files apart from other SQLite files.
APPLICATION_ID = 0x564F5453
#: Within one boot the monotonic clock says where a sample belongs: a wall clock
#: further off than this was stepped (NTP's corrections are seconds; a suspended VM,
#: whose monotonic clock stopped, is flagged and then trusted once it holds).
CLOCK_STEP_S = 300.0
#: Across a reboot only the history bounds it: this far ahead or behind is not trusted.
CLOCK_SLACK_S = DAY
#: A clock that stays consistently off for this long (one boot) is taken as the time.
CLOCK_TRUST_AFTER_S = HOUR
#: Unreadable raw samples skipped (and marked) before ``previous`` gives up.
MAX_SKIPPED = 20

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
    # 3: clocks and damaged rows (see the module docstring), and the state of
    # findings across runs, so cron reports a finding when it starts, worsens,
    # repeats and resolves instead of every minute.
    (
        "ALTER TABLE samples ADD COLUMN boot_id TEXT",
        "ALTER TABLE samples ADD COLUMN mono REAL",
        "ALTER TABLE samples ADD COLUMN clock TEXT NOT NULL DEFAULT 'ok'",
        "ALTER TABLE samples ADD COLUMN unreadable TEXT",
        "CREATE INDEX samples_host_id ON samples (host, id)",
        "CREATE INDEX samples_flagged ON samples (clock) WHERE clock != 'ok'",
        "CREATE TABLE findings ("
        " host TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " kind TEXT NOT NULL,"
        " scope TEXT NOT NULL,"
        " since REAL NOT NULL,"
        " last_seen REAL NOT NULL,"
        " notified REAL NOT NULL,"
        " level INTEGER NOT NULL,"
        " total REAL NOT NULL,"
        " message TEXT NOT NULL,"
        " clear_since REAL,"
        " resolved REAL,"
        " PRIMARY KEY (host, key)) WITHOUT ROWID",
        "CREATE TABLE finding_events ("
        " id INTEGER PRIMARY KEY,"
        " host TEXT NOT NULL,"
        " ts REAL NOT NULL,"
        " key TEXT NOT NULL,"
        " kind TEXT NOT NULL,"
        " scope TEXT NOT NULL,"
        " state TEXT NOT NULL,"
        " message TEXT NOT NULL)",
        "CREATE INDEX finding_events_host_ts ON finding_events (host, ts)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_NUMBER = "typeof({}) IN ('integer', 'real')"


class HistoryTooNewError(HistoryError):
    """The file's schema is newer than this code; refusing beats guessing."""


class Point(NamedTuple):
    """One measurement of a sample: ``scope`` is "host" or a container, ``metric`` a name."""

    scope: str
    metric: str
    value: float


class Stored(NamedTuple):
    """A raw sample as stored: its time, counters, row id and clock verdict."""

    ts: float
    raw: dict[str, Any]
    id: int
    clock: str  # "ok" | "ahead" | "behind"


class Recorded(NamedTuple):
    """What ``record`` did: the new row, what its clock was judged, and a line to say
    when something about the clock changed (``note_is_new``) or still holds."""

    sample_id: int
    clock: str  # "ok" | "ahead" | "behind"
    note: str | None = None
    note_is_new: bool = False


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
    flagged: int = 0  # samples whose clock is not trusted (hidden from series)


@dataclass
class FindingState:
    """One finding's life across runs (a row of ``findings``): when it began, was
    last seen and last reported, how bad it was then (``level``), the episode's
    running ``total`` for counted events, since when it has looked clear, and when
    it resolved if no run that reports its kind has said so yet."""

    key: str
    kind: str
    scope: str
    since: float
    last_seen: float
    notified: float  # 0: never said (found by a run that does not report this kind)
    level: int  # the level last said
    total: float
    message: str
    clear_since: float | None = None
    resolved: float | None = None  # resolved, not yet said by a run that reports it


@dataclass(frozen=True)
class FindingEvent:
    """A line cron said about a finding: ``state`` is new, worse, repeat or resolved."""

    ts: float
    key: str
    kind: str
    scope: str
    state: str
    message: str


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


def _number(value: Any) -> float | None:
    """A finite number as float; None for anything else a damaged row may hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class History:
    """An open history file; use as a context manager so the connection is closed.

    ``raw_days`` and ``hourly_days`` are the retention that ``record``'s
    opportunistic compaction applies; ``auto_compact=False`` turns it off.
    ``readonly=True`` opens an existing file without writing anything (not even
    the WAL switch or a migration); every write then raises ``HistoryError``.
    ``warnings`` collects one line per damaged row skipped while reading.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        readonly: bool = False,
        raw_days: float = 7,
        hourly_days: float = 90,
        auto_compact: bool = True,
    ) -> None:
        _check_retention(raw_days, hourly_days)
        self.path = Path(path) if path is not None else default_db_path()
        self.readonly = readonly
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self.auto_compact = auto_compact
        self.warnings: list[str] = []
        existed = self.path.exists()
        self._conn = self._connect_readonly() if readonly else self._connect()
        try:
            self._prepare()
        except BaseException:
            self._conn.close()
            if not existed and not readonly:
                # Nothing was recorded: leave no empty file behind (a full disk, say).
                for suffix in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{self.path}{suffix}")
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
            raise HistoryError(self._explain(exc, "cannot open")) from exc
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise HistoryError(f"history {self.path}: is a directory")
        if not self.path.exists():
            raise HistoryError(
                f"no history at {self.path}; run `vots-ops report` (e.g. from cron) first"
            )
        import urllib.parse

        quoted = urllib.parse.quote(str(self.path.absolute()))
        last: sqlite3.Error | None = None
        # mode=ro first: it reads a live file's WAL. Where that cannot work (the
        # -shm file cannot be created on a read-only mount or directory), the file
        # cannot change under us either, and immutable=1 reads it as it is.
        for options in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    f"file:{quoted}?{options}",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                )
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.Error as exc:
                last = exc
                code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
                if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                    break
        assert last is not None
        raise HistoryError(self._explain(last, "cannot open")) from last

    def _prepare(self) -> None:
        """Check the file is ours and not newer, then WAL, pragmas and migrations."""
        with self._guard("cannot open"):
            conn = self._conn
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            version = self._check_file()
            if self.readonly:
                if version < SCHEMA_VERSION:
                    raise HistoryError(
                        f"history {self.path} has schema version {version} (this vots-ops "
                        f"reads {SCHEMA_VERSION}); run `vots-ops report --db {self.path}` once "
                        "where it is writable to upgrade it"
                    )
                return
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
                import random

                time.sleep(random.uniform(0.005, 0.05))  # jitter: retries do not collide

    def _check_file(self) -> int:
        # One statement, so one snapshot: read separately, a concurrent first run's
        # migration could land in between and make a fresh file look foreign.
        version, app, tables = self._conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT application_id FROM pragma_application_id),"
            " (SELECT count(*) FROM sqlite_master)"
        ).fetchone()
        # Another application's file first: its own schema version says nothing about us.
        if (version == 0 and tables) or (version > 0 and app != APPLICATION_ID):
            raise HistoryError(
                f"history {self.path} is a SQLite database of something else "
                f"(application_id {app:#x}, schema version {version}); choose another file"
            )
        self._refuse_newer(version)
        if self.readonly and version == 0:
            raise HistoryError(f"history {self.path} is empty; nothing has been recorded yet")
        return int(version)

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

    def _explain(self, exc: sqlite3.Error, doing: str) -> str:
        """One line saying what is wrong with the file or its disk, and what to do.

        SQLite's own texts mislead here: a full disk or a read-only mount is not
        "not a database", and the advice to move a healthy history aside would
        throw it away.
        """
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        where = f"history {self.path}: {doing}"
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or _is_busy(exc):
            return f"{where}: {exc} (another process kept it busy; waited {BUSY_TIMEOUT_S:g} s)"
        full = _disk_full(self.path)
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and full):
            return f"{where}: no space left on the device ({full or 'the disk is full'}); free some space, the history is unchanged"
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN) or (
            "readonly" in str(exc) or "read-only" in str(exc)
        ):
            why = _why_readonly(self.path)
            if why:
                return f"{where}: {why}; use --db for a writable copy, or --no-history"
            if code == sqlite3.SQLITE_CANTOPEN:
                return f"{where}: SQLite cannot open the file ({exc})"
        if code == sqlite3.SQLITE_NOTADB:
            return (
                f"history {self.path} is not a SQLite database ({exc}); "
                "choose another file with --db"
            )
        if code == sqlite3.SQLITE_CORRUPT:
            return (
                f"{where}: the database file is damaged ({exc}); keep a copy, then try "
                f"`sqlite3 {self.path} .recover`"
            )
        if code == sqlite3.SQLITE_IOERR:
            return f"{where}: I/O error from the disk ({exc})"
        return f"{where}: {exc}"

    @contextlib.contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """SQLite's runtime failures (locked, full, read-only, malformed) → one-line errors."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            raise  # our bug, not the environment's: keep the traceback
        except sqlite3.DatabaseError as exc:
            raise HistoryError(self._explain(exc, doing)) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout),
        so a transaction never fails half-way because another writer got there first."""
        if self.readonly:
            raise HistoryError(f"history {self.path} was opened read-only")
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

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

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

    def record(
        self,
        ts: float,
        host: str,
        raw: Mapping[str, Any],
        points: Iterable[Point],
        *,
        boot_id: str | None = None,
        mono: float | None = None,
    ) -> Recorded:
        """Store one sample and its points in one transaction.

        ``boot_id`` and ``mono`` (the monotonic clock when it was taken) let the
        history judge the wall clock ``ts`` against the last trusted sample; a
        sample under a clock in doubt is stored but flagged (see the module
        docstring). Then, at most once per hour and only when the clock is trusted,
        old points are compacted relative to the newest trusted sample, so cron
        needs no second job; if that compaction fails the sample is already stored
        and the error is raised.
        """
        row = _validate(ts, host, raw, points)
        with self._guard("cannot record"), self._transaction() as conn:
            clock, note, fresh = self._judge_clock(conn, host, row[0], boot_id, mono)
            sample_id = self._insert(conn, row, {}, boot_id, mono, clock)
            if clock == "ok":
                settled = self._settle_flagged(conn, host, row[0], boot_id, mono)
                if settled:
                    note, fresh = settled, True
            else:
                accepted = self._accept_flagged(conn, host, row[0], boot_id, mono)
                if accepted:
                    clock, note, fresh = "ok", accepted, True
        if self.auto_compact and clock == "ok":
            reference = self.newest_ts()
            if reference is not None:
                self._maybe_compact(reference)
        return Recorded(sample_id, clock, note, fresh)

    def _record_many(
        self, samples: Iterable[tuple[float, str, Mapping[str, Any], Iterable[Point]]]
    ) -> list[int]:
        """Bulk insert in one transaction, without clock checks or compaction (tests,
        imports)."""
        rows = [_validate(*sample) for sample in samples]
        with self._guard("cannot record"), self._transaction() as conn:
            cache: dict[tuple[str, str, str], int] = {}
            return [self._insert(conn, row, cache, None, None, "ok") for row in rows]

    def _insert(
        self,
        conn: sqlite3.Connection,
        row: _Row,
        cache: dict[Any, int],
        boot_id: str | None,
        mono: float | None,
        clock: str,
    ) -> int:
        ts, host, raw_json, values = row
        cur = conn.execute(
            "INSERT INTO samples (ts, host, raw, boot_id, mono, clock) VALUES (?, ?, ?, ?, ?, ?)",
            (ts, host, raw_json, boot_id, mono, clock),
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
        return int(cache[key])

    # -- clocks --------------------------------------------------------------

    def _judge_clock(
        self,
        conn: sqlite3.Connection,
        host: str,
        ts: float,
        boot_id: str | None,
        mono: float | None,
    ) -> tuple[str, str | None, bool]:
        """("ok" | "ahead" | "behind", a line when not ok, whether that line is news)."""
        ref = conn.execute(
            f"SELECT ts, boot_id, mono FROM samples WHERE host = ? AND clock = 'ok'"
            f" AND {_NUMBER.format('ts')} ORDER BY id DESC LIMIT 1",
            (host,),
        ).fetchone()
        if ref is None:
            return "ok", None, False
        ref_ts, ref_boot, ref_mono = ref
        same_boot = (
            boot_id is not None
            and boot_id == ref_boot
            and _number(mono) is not None
            and _number(ref_mono) is not None
            and mono >= ref_mono
        )
        # Within a boot the monotonic clock says where this sample belongs; across
        # a reboot only that it cannot be before the last one (give or take).
        expected = ref_ts + (mono - ref_mono) if same_boot else ref_ts
        skew = ts - expected
        if same_boot and abs(skew) <= CLOCK_STEP_S:
            return "ok", None, False
        if not same_boot and -CLOCK_SLACK_S <= skew <= CLOCK_SLACK_S:
            # After a reboot a gap of hours is normal; days ahead is an RTC wrong at
            # boot, or a VM restored or off for days: flagged until it settles.
            return "ok", None, False
        from ops.units import format_duration

        side = "ahead of" if skew > 0 else "behind"
        last = conn.execute(
            "SELECT clock FROM samples WHERE host = ? ORDER BY id DESC LIMIT 1", (host,)
        ).fetchone()
        fresh = last is None or last[0] == "ok"
        note = (
            f"the clock is {format_duration(skew)} {side} the history (last trusted sample "
            f"{format_utc(ref_ts)}); this sample is kept but flagged, and nothing is compacted "
            f"or pruned until the clock is back or has held for {format_duration(CLOCK_TRUST_AFTER_S)}"
        )
        return side.split()[0], note, fresh

    def _settle_flagged(
        self,
        conn: sqlite3.Connection,
        host: str,
        ts: float,
        boot_id: str | None,
        mono: float | None,
    ) -> str | None:
        """A trusted sample arrived: re-date the flagged samples of its boot from the
        monotonic clock (their wall clock was wrong, their monotonic one was not)."""
        now = _number(mono)
        if boot_id is None or now is None:
            return None
        rows = conn.execute(
            "SELECT id, mono FROM samples WHERE host = ? AND clock != 'ok' AND boot_id = ?",
            (host, boot_id),
        ).fetchall()
        moved = 0
        for sample_id, s_mono in rows:
            then = _number(s_mono)
            if then is None or then > now:
                continue
            true_ts = ts - (now - then)
            conn.execute(
                "UPDATE samples SET ts = ?, clock = 'ok' WHERE id = ?", (true_ts, sample_id)
            )
            conn.execute("UPDATE points SET ts = ? WHERE sample_id = ?", (true_ts, sample_id))
            moved += 1
        if not moved:
            return None
        return (
            f"the clock is back in line: {moved} sample(s) taken under the wrong clock "
            "were re-dated from the monotonic clock"
        )

    def _accept_flagged(
        self,
        conn: sqlite3.Connection,
        host: str,
        ts: float,
        boot_id: str | None,
        mono: float | None,
    ) -> str | None:
        """The clock has stayed off, consistently, for ``CLOCK_TRUST_AFTER_S`` of one
        boot's monotonic time: it is the machine's time now; trust those samples."""
        now = _number(mono)
        if boot_id is None or now is None:
            return None
        offset = ts - now
        steady = [
            (sample_id, then)
            for sample_id, when, then in _flagged_of_boot(conn, host, boot_id)
            if abs((when - then) - offset) <= 60
        ]
        if not steady or now - min(m for _, m in steady) < CLOCK_TRUST_AFTER_S:
            return None
        conn.executemany(
            "UPDATE samples SET clock = 'ok' WHERE id = ?",
            [(sample_id,) for sample_id, _ in steady],
        )
        from ops.units import format_duration

        return (
            f"the clock has held for {format_duration(CLOCK_TRUST_AFTER_S)}: taking it as the "
            f"time ({len(steady)} flagged sample(s) are trusted now)"
        )

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
        if not found:
            return None
        try:
            value = float(found[0])
        except (TypeError, ValueError):
            return None  # a damaged value: compact now and write a good one
        return value if math.isfinite(value) else None

    def compact(self, now: float, raw_days: float = 7, hourly_days: float = 90) -> Compaction:
        """Fold raw points older than ``raw_days`` into hourly rows and delete them;
        delete hourly rows (and finding events) older than ``hourly_days``.

        ``now`` is the reference retention is judged against; ``record`` passes
        the newest trusted sample, not the wall clock. Only whole hours are folded
        (the cut-off is rounded down to the hour), and each transaction aggregates
        and deletes the same rows, so running twice or concurrently never counts a
        point twice. Backlogs go a day per transaction, so overlapping cron runs
        are not kept waiting past the busy timeout. Samples whose clock is in
        doubt are never folded or deleted.
        """
        _check_retention(raw_days, hourly_days)
        cutoff = _floor_hour(now - raw_days * DAY)
        hourly_cutoff = _floor_hour(now - hourly_days * DAY)
        done = {"points": 0, "samples": 0, "hourly_written": 0}
        with self._guard("cannot compact"):
            while True:
                with self._transaction() as conn:
                    oldest = conn.execute(
                        f"SELECT min(ts) FROM samples WHERE clock = 'ok' AND {_NUMBER.format('ts')}"
                        " AND ts < ?",
                        (cutoff,),
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
                conn.execute("DELETE FROM finding_events WHERE ts < ?", (hourly_cutoff,))
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
        """Aggregate the trusted samples in [lo, hi) into hourly rows, then delete them.
        A point that is not a number (a damaged row) goes with its sample, uncounted."""
        groups: dict[tuple[int, int], list[float]] = {}
        rows = conn.execute(
            "SELECT p.series_id, p.ts, p.value FROM samples AS s"
            " JOIN points AS p ON p.sample_id = s.id"
            " WHERE s.ts >= ? AND s.ts < ? AND s.clock = 'ok'",
            (lo, hi),
        )
        npoints = 0
        for series_id, ts, value in rows:
            t, v = _number(ts), _number(value)
            if t is None or v is None:
                continue
            groups.setdefault((series_id, _floor_hour(t)), []).append(v)
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
            "DELETE FROM samples WHERE ts >= ? AND ts < ? AND clock = 'ok'", (lo, hi)
        ).rowcount  # points go with them: ON DELETE CASCADE
        return {"points": npoints, "samples": nsamples, "hourly_written": len(aggregates)}

    # -- reading -------------------------------------------------------------

    def previous(
        self, host: str, check: Callable[[dict[str, Any]], str | None] | None = None
    ) -> Stored | None:
        """The last sample *recorded* for ``host`` (insertion order, whatever its
        clock said), so this run can compute rates without sleeping between two reads.

        A row whose JSON does not parse, or that ``check(raw)`` rejects (returns a
        reason), is skipped with a one-line warning and marked unreadable (unless
        read-only), so the next run does not trip over it again.
        """
        with self._guard("cannot read"):
            rows = self._conn.execute(
                "SELECT id, ts, raw, clock FROM samples WHERE host = ? AND unreadable IS NULL"
                " ORDER BY id DESC LIMIT ?",
                (host, MAX_SKIPPED + 1),
            ).fetchall()
        for sample_id, ts, raw_text, clock in rows:
            problem = None
            raw: Any = None
            try:
                raw = json.loads(raw_text) if isinstance(raw_text, (str, bytes)) else None
            except ValueError as exc:
                problem = f"its JSON does not parse ({exc})"
            if problem is None and not isinstance(raw, dict):
                problem = "it is not a JSON object"
            if problem is None and _number(ts) is None:
                problem = f"its time is {ts!r}, not a number"
            if problem is None and check is not None:
                problem = check(raw)
            if problem is None:
                return Stored(float(ts), raw, int(sample_id), str(clock))
            self.mark_unreadable(int(sample_id), problem)
        return None

    def mark_unreadable(self, sample_id: int, reason: str) -> None:
        """Say once that a stored sample cannot be used, and remember it (when writable)."""
        self._warn(f"history {self.path}: sample #{sample_id} is unreadable ({reason}); skipped")
        if self.readonly:
            return
        with self._guard("cannot record"), self._transaction() as conn:
            conn.execute(
                "UPDATE samples SET unreadable = ? WHERE id = ?", (reason[:200], sample_id)
            )

    def newest_ts(self, host: str | None = None) -> float | None:
        """The time of the newest trusted sample (of ``host``): what "now" is for
        retention, charts and advice, judged from the data rather than this run's clock."""
        sql = f"SELECT max(ts) FROM samples WHERE clock = 'ok' AND {_NUMBER.format('ts')}"
        args: list[Any] = []
        if host is not None:
            sql += " AND host = ?"
            args.append(host)
        with self._guard("cannot read"):
            found = self._conn.execute(sql, args).fetchone()[0]
        return _number(found)

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
        Points of samples whose clock is in doubt are left out; a value that is not
        a finite number (a damaged row) is skipped with a warning. With no
        ``host``, every host's points are merged.
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
            " SELECT ts, value, 0, sample_id, series_id FROM points"
            " WHERE series_id IN (SELECT id FROM s) AND ts >= ? AND ts <= ?"
            " AND sample_id NOT IN (SELECT id FROM samples WHERE clock != 'ok')"
            " UNION ALL"
            " SELECT CAST(hour_ts AS REAL), mean, 1, hour_ts, series_id FROM hourly"
            " WHERE series_id IN (SELECT id FROM s) AND hour_ts >= ? AND hour_ts <= ?"
        )
        with self._guard("cannot read"):
            # One statement, so one consistent snapshot even while a compaction commits.
            rows = self._conn.execute(sql, [*args, lo, hi, lo, hi]).fetchall()
        out: list[tuple[float, float]] = []
        bad: list[tuple[int, Any, Any]] = []
        for ts, value, hourly, row_key, series_id in rows:
            t, v = _number(ts), _number(value)
            if t is None or v is None:
                bad.append((hourly, row_key, series_id))
                continue
            out.append((t, v))
        if bad:
            self._drop_unreadable(bad, f"{scope} {metric}")
        out.sort()
        return out

    def _drop_unreadable(self, rows: list[tuple[int, Any, Any]], what: str) -> None:
        """Values that are not numbers carry nothing: say so once and, when the
        history is writable, delete those rows so no later run trips over them
        (read-only: skipped, said each time)."""
        if self.readonly:
            self._warn(f"history {self.path}: {len(rows)} unreadable value(s) of {what} skipped")
            return
        with self._guard("cannot record"), self._transaction() as conn:
            conn.executemany(
                "DELETE FROM points WHERE sample_id = ? AND series_id = ?",
                [(key, sid) for hourly, key, sid in rows if not hourly],
            )
            conn.executemany(
                "DELETE FROM hourly WHERE hour_ts = ? AND series_id = ?",
                [(key, sid) for hourly, key, sid in rows if hourly],
            )
        self._warn(f"history {self.path}: {len(rows)} unreadable value(s) of {what} removed")

    def recent(
        self, host: str, metrics: Iterable[str], since: float
    ) -> dict[tuple[str, str], list[tuple[float, float]]]:
        """Raw points of ``host`` since ``since`` for every scope of the given
        metrics, in one query: ``(scope, metric) -> [(ts, value), ...]`` in time
        order. The cron path's anomaly check reads its windows this way (one
        statement instead of one per series). Flagged samples and values that are
        not numbers are left out, as in ``series``."""
        names = sorted(set(metrics))
        if not names:
            return {}
        marks = ", ".join("?" * len(names))
        sql = (
            "SELECT s.scope, s.metric, p.ts, p.value, p.sample_id, p.series_id FROM series AS s"
            " JOIN points AS p ON p.series_id = s.id"
            f" WHERE s.host = ? AND s.metric IN ({marks}) AND p.ts >= ?"
            " AND p.sample_id NOT IN (SELECT id FROM samples WHERE clock != 'ok')"
        )
        with self._guard("cannot read"):
            rows = self._conn.execute(sql, [host, *names, since]).fetchall()
        out: dict[tuple[str, str], list[tuple[float, float]]] = {}
        bad: dict[tuple[str, str], list[tuple[int, Any, Any]]] = {}
        isfinite = math.isfinite
        for scope, metric, ts, value, sample_id, series_id in rows:
            # REAL columns give floats; anything else is a damaged row (or an int).
            if type(ts) is not float or type(value) is not float:
                ts, value = _number(ts), _number(value)
                if ts is None or value is None:
                    bad.setdefault((scope, metric), []).append((0, sample_id, series_id))
                    continue
            elif not (isfinite(ts) and isfinite(value)):
                bad.setdefault((scope, metric), []).append((0, sample_id, series_id))
                continue
            out.setdefault((scope, metric), []).append((ts, value))
        for (scope, metric), keys in sorted(bad.items()):
            self._drop_unreadable(keys, f"{scope} {metric}")
        for points in out.values():
            points.sort()
        return out

    def since_last(self, host: str, n: int) -> float | None:
        """The time of ``host``'s ``n``-th newest trusted sample (None with fewer): a
        window of the last ``n`` samples, whatever the sampling interval."""
        with self._guard("cannot read"):
            found = self._conn.execute(
                "SELECT ts FROM samples WHERE host = ? AND clock = 'ok'"
                " ORDER BY id DESC LIMIT 1 OFFSET ?",
                (host, max(0, n - 1)),
            ).fetchone()
        return _number(found[0]) if found else None

    def scopes(self, host: str | None = None) -> list[str]:
        """Scopes with data ("host", "container:NAME", ...), sorted."""
        sql, args = "SELECT DISTINCT scope FROM series", []
        if host is not None:
            sql, args = sql + " WHERE host = ?", [host]
        with self._guard("cannot read"):
            return [
                row[0]
                for row in self._conn.execute(sql + " ORDER BY scope", args)
                if isinstance(row[0], str)
            ]

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
            return [row[0] for row in self._conn.execute(sql, args) if isinstance(row[0], str)]

    def hosts(self) -> list[str]:
        """Hosts with data, sorted (one per file unless files are merged)."""
        with self._guard("cannot read"):
            return [
                r[0]
                for r in self._conn.execute("SELECT DISTINCT host FROM series ORDER BY 1")
                if isinstance(r[0], str)
            ]

    def stats(self) -> Stats:
        """Row counts and the size of the file and its WAL."""
        conn = self._conn
        with self._guard("cannot read"):
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM points),"
                " (SELECT count(*) FROM hourly), (SELECT count(*) FROM series),"
                " (SELECT count(*) FROM samples WHERE clock != 'ok')"
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
            flagged=counts[4],
        )

    # -- findings ------------------------------------------------------------

    def update_findings(
        self,
        host: str,
        update: Callable[
            [dict[str, FindingState]], tuple[dict[str, FindingState], list[FindingEvent]]
        ],
    ) -> list[FindingEvent]:
        """Read ``host``'s finding states, let ``update`` decide the new states and
        the events to report, and store both, in one transaction: overlapping cron
        runs see each other's decisions, so a finding is reported once, not twice.
        A damaged state row is dropped with a warning (the finding starts afresh)."""
        with self._guard("cannot record"), self._transaction() as conn:
            states: dict[str, FindingState] = {}
            for row in conn.execute(
                "SELECT key, kind, scope, since, last_seen, notified, level, total, message,"
                " clear_since, resolved FROM findings WHERE host = ?",
                (host,),
            ):
                state = _finding_state(row)
                if state is None:
                    self._warn(
                        f"history {self.path}: finding state {row[0]!r} is unreadable; reset"
                    )
                    continue
                states[state.key] = state
            new, events = update(states)
            conn.execute("DELETE FROM findings WHERE host = ?", (host,))
            conn.executemany(
                "INSERT INTO findings (host, key, kind, scope, since, last_seen, notified, level,"
                " total, message, clear_since, resolved)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        host,
                        s.key,
                        s.kind,
                        s.scope,
                        s.since,
                        s.last_seen,
                        s.notified,
                        s.level,
                        s.total,
                        s.message,
                        s.clear_since,
                        s.resolved,
                    )
                    for s in new.values()
                ],
            )
            conn.executemany(
                "INSERT INTO finding_events (host, ts, key, kind, scope, state, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(host, e.ts, e.key, e.kind, e.scope, e.state, e.message) for e in events],
            )
        return events

    def finding_states(self, host: str) -> dict[str, FindingState]:
        """The findings open now for ``host`` (read-only; resolved ones waiting to be
        said are not open)."""
        with self._guard("cannot read"):
            rows = self._conn.execute(
                "SELECT key, kind, scope, since, last_seen, notified, level, total, message,"
                " clear_since, resolved FROM findings WHERE host = ?",
                (host,),
            ).fetchall()
        states = (_finding_state(row) for row in rows)
        return {s.key: s for s in states if s is not None and s.resolved is None}

    def finding_events(
        self, host: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[FindingEvent]:
        """What cron reported about findings in ``[since, until]``, oldest first."""
        sql = "SELECT ts, key, kind, scope, state, message FROM finding_events WHERE ts >= ? AND ts <= ?"
        args: list[Any] = [
            -math.inf if since is None else since,
            math.inf if until is None else until,
        ]
        if host is not None:
            sql += " AND host = ?"
            args.append(host)
        with self._guard("cannot read"):
            rows = self._conn.execute(sql + " ORDER BY ts, id", args).fetchall()
        out = []
        for ts, key, kind, scope, state, message in rows:
            t = _number(ts)
            if t is None or not all(isinstance(x, str) for x in (key, kind, scope, state, message)):
                continue
            out.append(FindingEvent(t, key, kind, scope, state, message))
        return out


_Row = tuple[float, str, str, list[tuple[str, str, float]]]


def _flagged_of_boot(
    conn: sqlite3.Connection, host: str, boot_id: str
) -> list[tuple[int, float, float]]:
    """(id, ts, mono) of ``host``'s samples of that boot whose clock is in doubt, in
    the order they were recorded (rows whose times are not numbers left out)."""
    rows = conn.execute(
        "SELECT id, ts, mono FROM samples WHERE host = ? AND clock != 'ok' AND boot_id = ?"
        " ORDER BY id",
        (host, boot_id),
    ).fetchall()
    out = []
    for sample_id, ts, mono in rows:
        when, then = _number(ts), _number(mono)
        if when is not None and then is not None:
            out.append((int(sample_id), when, then))
    return out


def _finding_state(row: Sequence[Any]) -> FindingState | None:
    key, kind, scope, since, last_seen, notified, level, total, message, clear_since, resolved = row
    numbers = [_number(x) for x in (since, last_seen, notified, level, total)]
    if not all(isinstance(x, str) for x in (key, kind, scope, message)) or None in numbers:
        return None
    return FindingState(
        key,
        kind,
        scope,
        numbers[0],  # type: ignore[arg-type]
        numbers[1],  # type: ignore[arg-type]
        numbers[2],  # type: ignore[arg-type]
        int(numbers[3]),  # type: ignore[arg-type]
        numbers[4],  # type: ignore[arg-type]
        message,
        _number(clear_since),
        _number(resolved),
    )


def _disk_full(path: Path) -> str | None:
    """ "N B free on MOUNT" when the file system holding ``path`` is (nearly) full."""
    from ops.units import format_bytes

    probe = path if path.exists() else path.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if free > 1024 * 1024:
        return None
    return f"{format_bytes(free)} free"


def _why_readonly(path: Path) -> str | None:
    """Which of the file, its directory or its file system refuses writes, if any."""
    probe = path if path.exists() else path.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        st = None
    if st is not None and st.f_flag & os.ST_RDONLY:
        return "the file system is mounted read-only"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only (its permissions or owner)"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (
            f"its directory {path.parent} is not writable (SQLite keeps -wal and -shm "
            "files next to the database)"
        )
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and not os.access(side, os.W_OK):
            return f"{side.name} next to it is read-only"
    return None


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
