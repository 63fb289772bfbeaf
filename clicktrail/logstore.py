"""The event store: attempts, their links, and every event, in SQLite (WAL).

One connection per worker process (and thread), opened once and kept; WAL is
set when the database is created; writers wait on ``busy_timeout``.  The
schema is built by numbered migrations recorded in ``schema_migrations``.
The SQL is kept portable (no SQLite-only syntax in queries) so a PostgreSQL
backend can stand behind the same interface.

A serving process (the web app, the relay) appends each event to its own
journal file and a thread of it moves the events into the database in
batches (``journal``).  When an event can be neither journaled nor written
(database locked, read-only, disk full) it is appended to a spool file
(JSON Lines, fsync'd) and replayed into the database later: by the mover
thread, the next successful write, or ``clicktrail replay``.  Event ids
make every replay idempotent.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ClicktrailError, StoreUnavailable
from .journal import Journal, batches, files

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE attempts (
            id BIGINT PRIMARY KEY,
            content_id BIGINT NOT NULL,
            ts TEXT NOT NULL,
            recipient TEXT,
            subject TEXT,
            message_id TEXT,
            tag TEXT,
            track_clicks INTEGER NOT NULL,
            track_opens INTEGER NOT NULL
        )""",
        "CREATE INDEX attempts_ts ON attempts (ts)",
        "CREATE INDEX attempts_tag ON attempts (tag)",
        """CREATE TABLE links (
            content_id BIGINT NOT NULL,
            idx INTEGER NOT NULL,
            kind TEXT NOT NULL,
            url TEXT NOT NULL,
            PRIMARY KEY (content_id, idx)
        )""",
        """CREATE TABLE events (
            seq {serial},
            event_id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            kind TEXT,
            ts TEXT NOT NULL,
            attempt_id BIGINT,
            link_idx INTEGER,
            url TEXT,
            ip TEXT,
            user_agent TEXT,
            detail TEXT
        )""",
        "CREATE INDEX events_type_seq ON events (type, seq)",
        "CREATE INDEX events_attempt ON events (attempt_id, type)",
    ]),
    (2, [  # API keys (clicktrail/apikeys.py): only a hash of each key is kept
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
    ]),
    (3, [  # the SMTP relay: its logins (smtpusers.py), and copies already delivered (relay.py)
        """CREATE TABLE smtp_users (
            name TEXT PRIMARY KEY,
            password TEXT NOT NULL,
            track_clicks INTEGER NOT NULL,
            track_opens INTEGER NOT NULL,
            created TEXT NOT NULL
        )""",
        """CREATE TABLE relay_sent (
            digest TEXT PRIMARY KEY,
            attempt_id BIGINT NOT NULL,
            ts TEXT NOT NULL
        )""",
        "CREATE INDEX relay_sent_ts ON relay_sent (ts)",
    ]),
    (4, [  # dashboard summaries, folded from events by clicktrail/aggregate.py
        """CREATE TABLE agg_state (
            name TEXT PRIMARY KEY,
            seq BIGINT NOT NULL CHECK (seq >= 0),
            updated_at TEXT
        )""",
        "INSERT INTO agg_state (name, seq) VALUES ('events', 0)",
        "INSERT INTO agg_state (name, seq) VALUES ('attempts', 0)",
        """CREATE TABLE agg_sent (
            hour TEXT NOT NULL,
            tag TEXT NOT NULL,
            messages BIGINT NOT NULL,
            PRIMARY KEY (hour, tag)
        )""",
        """CREATE TABLE agg_attempts (
            attempt_id BIGINT PRIMARY KEY,
            tag TEXT NOT NULL,
            first_open TEXT,
            first_click TEXT,
            first_image TEXT,
            pixels BIGINT NOT NULL,
            clicks BIGINT NOT NULL
        )""",
        """CREATE TABLE agg_hours (
            hour TEXT NOT NULL,
            tag TEXT NOT NULL,
            opens BIGINT NOT NULL,
            unique_opens BIGINT NOT NULL,
            clicks BIGINT NOT NULL,
            unique_clicks BIGINT NOT NULL,
            PRIMARY KEY (hour, tag)
        )""",
        "CREATE TABLE agg_urls (url_id BIGINT PRIMARY KEY, url TEXT NOT NULL)",
        """CREATE TABLE agg_link_first (
            attempt_id BIGINT NOT NULL,
            url_id BIGINT NOT NULL,
            ts TEXT NOT NULL,
            PRIMARY KEY (attempt_id, url_id)
        )""",
        """CREATE TABLE agg_link_hours (
            hour TEXT NOT NULL,
            tag TEXT NOT NULL,
            url_id BIGINT NOT NULL,
            clicks BIGINT NOT NULL,
            unique_clicks BIGINT NOT NULL,
            PRIMARY KEY (hour, tag, url_id)
        )""",
        """CREATE TABLE agg_link_days (
            day TEXT NOT NULL,
            tag TEXT NOT NULL,
            url_id BIGINT NOT NULL,
            clicks BIGINT NOT NULL,
            unique_clicks BIGINT NOT NULL,
            PRIMARY KEY (day, tag, url_id)
        )""",
        # Covering indexes: a page adds up counts straight from the index, in order.
        "CREATE INDEX agg_hours_cover ON agg_hours (hour, tag, opens, unique_opens, clicks, unique_clicks)",
        "CREATE INDEX agg_link_hours_cover ON agg_link_hours (hour, tag, url_id, unique_clicks, clicks)",
        "CREATE INDEX agg_link_days_cover ON agg_link_days (day, tag, url_id, unique_clicks, clicks)",
        "CREATE INDEX attempts_tag_ts ON attempts (tag, ts)",
    ]),
    (5, [  # click domains of sender identities (clicktrail/domains.py)
        """CREATE TABLE click_domains (
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            base TEXT NOT NULL,
            host TEXT NOT NULL,
            added TEXT NOT NULL,
            PRIMARY KEY (kind, value)
        )""",
        "CREATE INDEX click_domains_host ON click_domains (host)",
    ]),
    (6, [  # a click counts as an open (aggregate.py): the event summaries are folded again from the start
        *(f"DELETE FROM {t}" for t in ("agg_attempts", "agg_hours", "agg_link_first", "agg_link_hours", "agg_link_days")),
        "UPDATE agg_state SET seq = 0 WHERE name = 'events'",
    ]),
]
SQLITE = {"serial": "INTEGER PRIMARY KEY"}
EVENT_TYPES = ("click", "open", "delivery", "failure")
LINK_CACHE = 50_000
# How long one event write waits for another writer.  Short, because a reader
# is waiting for the redirect: past it, the event goes to the spool instead.
EVENT_BUSY_MS = 1000
BUSY_MS = 10_000
RETRY_FIRST_SECONDS = 0.0001
RETRY_MAX_SECONDS = 0.002
# A long-running process (the web app, the relay) checkpoints the WAL into the
# database from a thread of its own, every CHECKPOINT_SECONDS: a checkpoint
# syncs both files, and in a request it cost 15 % of a busy worker's time
# (py-spy, see BENCHMARKS.md).  Its writers checkpoint themselves only when
# the WAL has grown past this many pages (the thread fell behind or stopped).
CHECKPOINT_SECONDS = 0.5
CHECKPOINT_FALLBACK_PAGES = 20_000
ADOPT_SECONDS = 5.0  # how often a serving process looks for journals of processes that died
GATHER_SECONDS = 0.002  # while events keep coming, the mover stores a batch at most this often
# A read first moves this process's own journal (read your own writes), but waits at most this long for the
# database: a reader is never held up behind another process's write for long; the mover stores it anyway.
SETTLE_BUSY_MS = 100
REJECTED = "rejected.txt"  # journal lines the database refuses for good, kept for a person to look at


def utcnow() -> str:
    """Now, in UTC, ISO 8601 with its offset."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_id() -> int:
    """A random positive 63-bit id: minted by any worker without a round trip."""
    return secrets.randbits(63) or 1


@dataclass
class Event:
    type: str
    attempt_id: int | None
    link_idx: int | None = None
    url: str | None = None
    kind: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: str | None = None
    ts: str = field(default_factory=utcnow)
    event_id: str = field(default_factory=lambda: secrets.token_hex(12))


@dataclass
class Attempt:
    id: int
    recipient: str | None
    subject: str | None = None
    message_id: str | None = None
    tag: str | None = None
    track_clicks: bool = True
    track_opens: bool = True
    ts: str = field(default_factory=utcnow)


@dataclass(frozen=True)
class Scope:
    """Which rows a log read or the stats cover: a time range [start, end), a tag ("" untagged), an attempt, a recipient."""

    start: str | None = None  # stored time form (see utcnow)
    end: str | None = None
    tag: str | None = None
    attempt: int | None = None
    recipient: str | None = None

    def where(self, ts: str | None, tag: str | None, attempt: str | None,
              recipient: str | None) -> tuple[str, list[Any]]:
        """SQL conditions (each starting with AND) over the given columns, and their parameters."""
        conds: list[tuple[str | None, str, Any]] = [
            (ts, "{} >= ?", self.start), (ts, "{} < ?", self.end), (tag, "{} = ?", self.tag),
            (attempt, "{} = ?", self.attempt), (recipient, "LOWER({}) = LOWER(?)", self.recipient),
        ]
        if self.tag == "":  # untagged, as on the dashboard: a tag is never empty
            conds[2] = (tag, "({0} IS NULL OR {0} = ?)", "")
        used = [(col, sql, value) for col, sql, value in conds if col is not None and value is not None]
        return "".join(" AND " + sql.format(col) for col, sql, _ in used), [v for _, _, v in used]


def attempt_key(attempt_id: int) -> str:
    """The attempt id as shown to users: 16 hex digits."""
    return format(attempt_id, "016x")


def parse_attempt_key(text: str) -> int | None:
    try:
        value = int(text, 16)
    except ValueError:
        return None
    return value if len(text) == 16 and 0 < value < 2**63 else None


def _storable(value: Any) -> Any:
    """A journal value as the database can take it: text that is not valid Unicode is repaired."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: kept visible as U+FFFD
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _busy(e: BaseException) -> bool:
    """Whether a database error is only another writer holding the lock (it passes: no need to reopen)."""
    return isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _refused_for_content(e: Exception) -> bool:
    """Whether the database refused rows for what is in them (for good), not for its own state (for now)."""
    return (isinstance(e, (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError))
            or (isinstance(e, sqlite3.ProgrammingError) and "binding parameter" in str(e)))


class _Mover:
    """The serving process's background thread: moves its journal into the database, checkpoints the WAL,
    and adopts the journals of processes that died.

    It wakes as soon as an event is appended, so an event is in the database
    a moment after its answer; under load the next batch grows while one
    commits.  A failing database leaves the lines in the journal; they are
    moved when it recovers.  PASSIVE checkpoints never wait for, or block, a
    reader or a writer.  The thread ends with its store or its process.
    """

    def __init__(self, store: Store) -> None:
        self.store, self.pid = weakref.ref(store), os.getpid()
        self.wake = threading.Event()
        self.idle = True  # waiting for a wake-up; when busy, appends need not wake it

    def nudge(self) -> None:
        """An event was appended: wake the thread unless it is already gathering."""
        if self.idle:
            self.wake.set()

    def start(self) -> None:
        threading.Thread(target=self._run, name="clicktrail-mover", daemon=True).start()

    def _run(self) -> None:
        checkpoint_at = adopt_at = 0.0
        moved = 0
        while True:
            if moved:  # busy: let the next batch gather instead of waking for every event
                time.sleep(GATHER_SECONDS)
            else:  # idle is set before the last look at the journal: an append after it wakes us
                self.wake.wait(CHECKPOINT_SECONDS)
                self.idle = False
                self.wake.clear()
            store = self.store()
            if store is None or store._mover is not self or os.getpid() != self.pid:
                return
            moved = 0
            try:
                moved = store._move()
                if not moved:
                    self.idle = True
                    journal = store._journal
                    moved = int(journal is not None and journal.pid == self.pid and journal.waiting())
                now = time.monotonic()
                if now >= checkpoint_at:
                    store._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    checkpoint_at = now + CHECKPOINT_SECONDS
                if now >= adopt_at:
                    adopt_at = now + ADOPT_SECONDS
                    store._adopt_orphans()
                    if store._spool_waiting():  # the store has recovered: what was spooled goes in now
                        store._replay(EVENT_BUSY_MS)
            except (sqlite3.Error, OSError, ClicktrailError) as e:
                if _busy(e):  # another writer held the lock past our wait: the events wait in the journal
                    log.info("database busy; moving events again in a moment: %s", e)
                    time.sleep(GATHER_SECONDS)
                else:
                    log.warning("moving events into the database failed, will retry: %s", e)
                    store._reopen()  # a connection opened read-only stays read-only
                    time.sleep(CHECKPOINT_SECONDS)
            except Exception:  # noqa: BLE001 - the thread must outlive any surprise, or events wait for ever
                log.exception("moving events into the database failed unexpectedly, will retry")
                time.sleep(CHECKPOINT_SECONDS)
            finally:
                del store


def _last_move(ref: weakref.ref[Store]) -> None:
    """At a clean exit: move what this process's journal still holds (if this fails, another adopts it)."""
    store = ref()
    if store is not None:
        try:
            store._move()
        except (sqlite3.Error, OSError, ClicktrailError) as e:
            log.warning("journal left for adoption at exit: %s", e)


class Store:
    def __init__(self, path: str, spool: str, sync: bool = False) -> None:
        self.path, self.spool, self.sync = path, spool, sync
        self._local = threading.local()
        self._links: dict[tuple[int, int], tuple[str, str] | None] = {}
        self.journal_folder = spool + ".journal"
        self._serving = False
        self._generation = 0  # connections of an older generation are closed at their next use
        self._journal: Journal | None = None
        self._mover: _Mover | None = None
        self._move_lock = threading.Lock()
        self._start_lock = threading.Lock()  # one journal and one mover per process, however many threads race

    def serve(self) -> None:
        """For a long-running process (and each worker forked from it): events go through its journal.

        ``add_event`` appends to this process's journal and returns; a thread
        moves the events into the database, checkpoints and adopts orphaned
        journals (see ``journal``).
        """
        self._serving = True

    # -- connections and schema -------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if self._local.generation == self._generation:
                return conn
            self.close()  # the mover could not write: see _reopen
        conn = self._open(BUSY_MS)
        self._local.conn, self._local.pid, self._local.busy = conn, os.getpid(), BUSY_MS
        self._local.generation = self._generation
        return conn

    def _reopen(self) -> None:
        """Have every thread of this process open fresh connections: SQLite shares a database's
        shared-memory index between the connections of a process, so while one that was opened
        read-only stays open, a new one cannot write either."""
        self._generation += 1
        self.close()

    def _event_connection(self) -> sqlite3.Connection:
        """This thread's connection for event writes: no busy handler, ``_insert_event`` waits instead."""
        conn = getattr(self._local, "events", None)
        if conn is not None and self._local.events_pid == os.getpid() and self._local.generation == self._generation:
            return conn
        self._connect()  # checks the generation (closing both when stale)
        conn = self._open(0)
        self._local.events, self._local.events_pid = conn, os.getpid()
        return conn

    def _open(self, busy_ms: int) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=busy_ms / 1000, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.sync else 'NORMAL'}")
        if self._serving:  # the mover checkpoints (started by this process's first write, never before a fork)
            conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_FALLBACK_PAGES}")
        return conn

    def _mover_here(self) -> _Mover:
        """This process's mover thread, started on first use (a thread does not survive a fork)."""
        mover = self._mover
        if mover is None or mover.pid != os.getpid():
            with self._start_lock:
                mover = self._mover
                if mover is None or mover.pid != os.getpid():
                    mover = self._mover = _Mover(self)
                    mover.start()
        return mover

    def _journal_here(self) -> Journal:
        journal = self._journal
        if journal is None or journal.pid != os.getpid():
            with self._start_lock:
                journal = self._journal
                if journal is None or journal.pid != os.getpid():
                    journal = Journal(self.journal_folder, self.sync)
                    self._journal = journal
                    atexit.register(_last_move, weakref.ref(self))  # a worker that stops stores what it holds
        return journal

    def _busy(self, conn: sqlite3.Connection, ms: int) -> None:
        if self._local.busy != ms:
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._local.busy = ms

    def close(self) -> None:
        for name, pid in (("conn", "pid"), ("events", "events_pid")):
            conn = getattr(self._local, name, None)
            if conn is not None and getattr(self._local, pid, None) == os.getpid():
                conn.close()
            setattr(self._local, name, None)

    def migrate(self) -> int:
        """Create or upgrade the schema; return the version now in force."""
        try:
            return self._migrate()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open the database {self.path}: {e}") from e

    def _migrate(self) -> int:
        conn = self._connect()
        latest = max(v for v, _ in MIGRATIONS)
        if self._schema_version(conn) == latest:
            return latest  # up to date: no write, so a read-only database still serves links
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # once, when the database is new
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for sql in statements:
                    conn.execute(sql.format(**SQLITE))
                conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, utcnow()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return latest

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        try:
            return conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]  # type: ignore[no-any-return]
        except sqlite3.OperationalError:
            return None  # no schema yet

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read query (portable SQL, ``?`` placeholders) and return its rows."""
        self.settle()
        return self._connect().execute(sql, params).fetchall()

    def write(self, sql_rows: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run several statements, each over its rows, in one transaction."""
        self._write(sql_rows)

    def _write(self, sql_rows: Sequence[tuple[str, Sequence[Sequence[Any]]]], busy_ms: int = BUSY_MS) -> None:
        if self._serving:
            self._mover_here()  # a serving process that writes checkpoints too
        conn = self._connect()
        self._busy(conn, busy_ms)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in sql_rows:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- messages ---------------------------------------------------------------------
    def record_message(self, links: Sequence[tuple[str, str]], attempts: Sequence[Attempt]) -> int:
        """Store one message's links and its attempts (one per recipient) together."""
        content_id = new_id()
        self._write([
            ("INSERT INTO links (content_id, idx, kind, url) VALUES (?, ?, ?, ?)",
             [(content_id, i, kind, url) for i, (kind, url) in enumerate(links, 1)]),
            ("INSERT INTO attempts (id, content_id, ts, recipient, subject, message_id, tag, track_clicks, track_opens)"
             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
             [(a.id, content_id, a.ts, a.recipient, a.subject, a.message_id, a.tag, int(a.track_clicks),
               int(a.track_opens)) for a in attempts]),
        ])
        return content_id

    def link(self, attempt_id: int, idx: int) -> tuple[str, str] | None:
        """The (kind, url) of a link of an attempt; ('pixel', '') for index 0; None if unknown."""
        key = (attempt_id, idx)
        if key in self._links:
            return self._links[key]
        if idx == 0:
            row = self._connect().execute("SELECT 'pixel', '' FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        else:
            row = self._connect().execute(
                "SELECT l.kind, l.url FROM attempts a JOIN links l ON l.content_id = a.content_id AND l.idx = ?"
                " WHERE a.id = ?", (idx, attempt_id)).fetchone()
        found = None if row is None else (row[0], row[1])
        if found is not None:  # only known links are cached: an unknown one may be committed a moment later
            if len(self._links) >= LINK_CACHE:
                self._links.clear()
            self._links[key] = found
        return found

    # -- events -----------------------------------------------------------------------
    _INSERT_EVENT = (
        "INSERT INTO events (event_id, type, kind, ts, attempt_id, link_idx, url, ip, user_agent, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
    )

    @staticmethod
    def _event_row(e: Event) -> tuple[Any, ...]:
        return (e.event_id, e.type, e.kind, e.ts, e.attempt_id, e.link_idx, e.url, e.ip, e.user_agent, e.detail)

    def add_event(self, event: Event) -> bool:
        """Keep the event: in this process's journal when serving, else in the database, else the spool.

        True when it went to the journal or the database (False: spooled).
        """
        if self._serving:
            line = (json.dumps(self._event_row(event), ensure_ascii=True) + "\n").encode("ascii")
            try:
                self._journal_here().append(line)
            except OSError as e:
                log.error("event journal write failed (%s); writing event %s directly", e, event.event_id)
            else:
                if getattr(self._local, "generation", self._generation) != self._generation:
                    self._connect()  # let go of a stale connection now: it may keep the mover from writing
                self._mover_here().nudge()
                return True
        try:
            self._insert_event(self._event_row(event))
        except sqlite3.Error as e:
            log.error("event store write failed (%s); event %s spooled", e, event.event_id)
            # A connection opened while the database was read-only stays read-only:
            # open a fresh one next time, so writing resumes when the store recovers.
            self.close()
            self._spool(event)
            return False
        if self._spool_waiting():
            try:
                self._replay(EVENT_BUSY_MS)
            except (sqlite3.Error, OSError) as e:
                log.warning("spool replay failed: %s", e)
        return True

    def _insert_event(self, row: tuple[Any, ...]) -> None:
        """One INSERT, its own transaction (committed on return): the click's hot path.

        While another process writes, wait in short steps (from 0.1 ms, doubling
        to 2 ms) for EVENT_BUSY_MS at most.  SQLite's own busy handler sleeps
        1 ms, then 2, 5, 10 ms… for a lock held some 50 µs: under load that idled
        the worker for a third of the time it spent logging.
        """
        conn = self._event_connection()
        deadline, pause = 0.0, RETRY_FIRST_SECONDS
        while True:
            try:
                conn.execute(self._INSERT_EVENT, row)
                return
            except sqlite3.OperationalError as e:
                if getattr(e, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                if not deadline:
                    deadline = now + EVENT_BUSY_MS / 1000
                elif now >= deadline:
                    raise
                time.sleep(min(pause, deadline - now))
                pause = min(pause * 2, RETRY_MAX_SECONDS)

    def _rows(self, data: bytes, source: str) -> list[tuple[Any, ...]]:
        """Event rows from journal or spool lines (a JSON row, or an event object); unreadable lines are logged."""
        rows = []
        for ln in data.split(b"\n"):
            if not ln.strip():
                continue
            try:
                value = json.loads(ln)
                row = tuple(value) if isinstance(value, list) and len(value) == 10 else self._event_row(Event(**value))
                rows.append(tuple(_storable(v) for v in row))
            except (ValueError, TypeError) as e:
                log.error("%s line skipped, unreadable: %s", source, e)
                self._reject(ln)
        return rows

    def _insert_rows(self, rows: list[tuple[Any, ...]], busy_ms: int = EVENT_BUSY_MS) -> int:
        """Store event rows in one transaction (an id already stored is skipped); how many were new.

        A batch the database refuses for what is in it (not for being busy or
        read-only) is stored row by row, and the rows it refuses are set aside
        in ``REJECTED``: one bad line never holds up the events after it.
        """
        conn = self._connect()
        before = conn.total_changes
        try:
            self._write([(self._INSERT_EVENT, rows)], busy_ms)
        except (sqlite3.Error, OverflowError) as e:
            if not _refused_for_content(e):
                raise
            for row in rows:
                try:
                    self._write([(self._INSERT_EVENT, [row])], busy_ms)
                except (sqlite3.Error, OverflowError) as e:
                    if not _refused_for_content(e):
                        raise
                    log.error("event %s refused by the database (%s): set aside in %s", row[0], e, REJECTED)
                    self._reject(json.dumps(row, default=repr).encode())
        return conn.total_changes - before

    def _reject(self, line: bytes) -> None:
        os.makedirs(self.journal_folder, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.journal_folder, REJECTED), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.rstrip(b"\n") + b"\n")
        finally:
            os.close(fd)

    def _move(self, busy_ms: int = EVENT_BUSY_MS, lock_timeout: float = -1) -> int:
        """Move what this process's journal holds into the database; how many events.

        ``lock_timeout``: seconds to wait for another thread of this process that is moving it (-1: for ever).
        """
        journal = self._journal
        if journal is None or journal.pid != os.getpid():
            return 0
        moved = 0
        if not self._move_lock.acquire(timeout=lock_timeout):
            return 0
        try:
            while journal.waiting():
                data, end = journal.unmoved()
                if not data:
                    break
                rows = self._rows(data, "journal")
                if rows:
                    self._insert_rows(rows, busy_ms)
                journal.moved_to(end)
                moved += len(rows)
        finally:
            self._move_lock.release()
        return moved

    def settle(self) -> None:
        """Make this process's own journaled events visible to its reads (a no-op when nothing waits).

        Waits at most SETTLE_BUSY_MS for the database, and for a batch the mover
        thread is storing at most as long as that batch may wait (EVENT_BUSY_MS):
        a read is never held up for long, and the mover stores the events anyway.
        """
        journal = self._journal
        if journal is not None and journal.waiting() and journal.pid == os.getpid():
            try:
                self._move(SETTLE_BUSY_MS, lock_timeout=EVENT_BUSY_MS / 1000)
            except (sqlite3.Error, OSError) as e:
                log.warning("journal not moved before reading: %s", e)

    def _adopt_orphans(self, busy_ms: int = EVENT_BUSY_MS, live_too: bool = False) -> int:
        """Store and delete the journals of processes that died (and with ``live_too``, store what the
        live ones hold, leaving them be); how many events were new."""
        new = 0
        for path, fd, orphan in files(self.journal_folder):
            try:
                if not (orphan or live_too):
                    continue
                found = 0
                for data in batches(fd):
                    rows = self._rows(data, "journal")
                    if rows:
                        found += self._insert_rows(rows, busy_ms)
                new += found
                if orphan:
                    os.unlink(path)
                    log.info("journal %s of a finished process stored (%d new events)", path, found)
            finally:
                os.close(fd)
        return new

    def catch_up_fully(self) -> None:
        """Store every event acknowledged so far, waiting for the database as any write does; else raise.

        For the raw logs: a download is never silently short of events that
        are only still in a journal (StoreUnavailable: try again).
        """
        try:
            self._move(BUSY_MS)
            self._adopt_orphans(BUSY_MS, live_too=True)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(f"the log cannot be read complete now, events wait to be stored ({e});"
                                   " try again in a moment") from e

    def catch_up(self) -> None:
        """Make every event acknowledged so far, by any process, visible to this one's reads.

        Each serving process moves its journal within moments; a raw-log read
        does not wait for that, it stores what the journals hold (an event
        already stored is skipped).  Journal files are small (journal.ROTATE_BYTES).
        """
        self.settle()
        try:
            self._adopt_orphans(SETTLE_BUSY_MS, live_too=True)
        except (sqlite3.Error, OSError) as e:
            log.warning("journals not caught up before reading: %s", e)
        except Exception:  # noqa: BLE001 - a read must not fail for what another process left in its journal
            log.exception("journals not caught up before reading")

    def _spool(self, event: Event) -> None:
        line = (json.dumps(asdict(event), ensure_ascii=True) + "\n").encode("ascii")
        try:  # a missing folder, a read-only or full file system: nowhere is left
            fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreUnavailable(f"neither the database nor the spool can take events: {e}") from e

    def _spool_waiting(self) -> bool:
        try:
            return os.stat(self.spool).st_size > 0
        except FileNotFoundError:
            return False

    def replay(self) -> int:
        """Move spooled events, and journals left by processes that died, into the database; how many events."""
        try:
            return self._replay() + self._adopt_orphans(BUSY_MS, live_too=True)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"the database cannot take the spooled events yet: {e}") from e
        except OSError as e:
            raise StoreUnavailable(f"cannot read the spool {self.spool}: {e}") from e

    def _replay(self, busy_ms: int = BUSY_MS) -> int:
        try:
            fd = os.open(self.spool, os.O_RDWR)
        except FileNotFoundError:
            return 0
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            lines = [ln for ln in f.read().split(b"\n") if ln.strip()]
            events = []
            for ln in lines:
                try:
                    events.append(Event(**json.loads(ln)))
                except (ValueError, TypeError) as e:
                    log.error("spool line skipped, unreadable: %s", e)
            if events:
                self._write([(self._INSERT_EVENT, [self._event_row(e) for e in events])], busy_ms)
            f.truncate(0)
            os.fsync(f.fileno())
        return len(events)

    # -- reading ----------------------------------------------------------------------
    def events(self, type_: str, since: str | None = None, after: int = 0, batch: int = 1000,
               *, scope: Scope | None = None) -> Iterator[dict[str, Any]]:
        """Stream events of one type (with their attempt's fields), oldest first, in batches."""
        self.catch_up_fully()
        conn = self._connect()
        where, params = (scope or Scope(start=since)).where("e.ts", "a.tag", "e.attempt_id", "a.recipient")
        while True:
            rows = conn.execute(
                "SELECT e.seq, e.event_id, e.type, e.kind, e.ts, e.attempt_id, e.link_idx, e.url, e.ip,"
                " e.user_agent, e.detail, a.recipient, a.tag, a.message_id, a.subject"
                " FROM events e LEFT JOIN attempts a ON a.id = e.attempt_id"
                f" WHERE e.type = ? AND e.seq > ?{where} ORDER BY e.seq LIMIT ?",
                (type_, after, *params, batch)).fetchall()
            for r in rows:
                yield {
                    "id": r[1], "seq": r[0], "type": r[2], "kind": r[3], "time": r[4],
                    "message": None if r[5] is None else attempt_key(r[5]), "link": r[6], "url": r[7],
                    "ip": r[8], "user_agent": r[9], "detail": r[10], "recipient": r[11], "tag": r[12],
                    "message_id": r[13], "subject": r[14],
                }
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def event_seq(self, event_id: str) -> int | None:
        """The place of an event in its log (for paging after it), or None if unknown."""
        self.catch_up()
        row = self._connect().execute("SELECT seq FROM events WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else int(row[0])

    def attempt_place(self, attempt_id: int) -> tuple[str, int] | None:
        """The (time, id) an attempt is ordered by (for paging after it), or None if unknown."""
        self.settle()
        row = self._connect().execute("SELECT ts, id FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def attempts(self, since: str | None = None, batch: int = 1000, *, scope: Scope | None = None,
                 after: tuple[str, int] = ("", 0)) -> Iterator[dict[str, Any]]:
        """Stream attempts with their links, oldest first."""
        self.settle()
        conn = self._connect()
        where, params = (scope or Scope(start=since)).where("ts", "tag", "id", "recipient")
        last = after
        while True:
            rows = conn.execute(
                "SELECT id, content_id, ts, recipient, subject, message_id, tag, track_clicks, track_opens"
                f" FROM attempts WHERE (ts > ? OR (ts = ? AND id > ?)){where}"
                " ORDER BY ts, id LIMIT ?", (last[0], last[0], last[1], *params, batch)).fetchall()
            for r in rows:
                links = [u for (u,) in conn.execute(
                    "SELECT url FROM links WHERE content_id = ? AND kind = 'click' ORDER BY idx", (r[1],))]
                yield {
                    "id": attempt_key(r[0]), "type": "attempt", "time": r[2], "message": attempt_key(r[0]),
                    "recipient": r[3], "subject": r[4], "message_id": r[5], "tag": r[6],
                    "track_clicks": bool(r[7]), "track_opens": bool(r[8]), "links": links,
                }
            if len(rows) < batch:
                return
            last = (rows[-1][2], rows[-1][0])

    def tags(self) -> list[str]:
        """Every tag attempts were recorded with, sorted."""
        self.settle()
        return [t for (t,) in self._connect().execute(
            "SELECT DISTINCT tag FROM attempts WHERE tag IS NOT NULL ORDER BY tag")]

    def stats(self, limit: int = 10, *, tag: str | None = None, attempt: int | None = None) -> dict[str, Any]:
        """Messages, unique and total opens and clicks, rates, and the best links (of one tag or attempt)."""
        self.catch_up()
        conn = self._connect()
        cond, params = Scope(tag=tag, attempt=attempt).where(None, "tag", "id", None)
        # Events of the attempts in scope; with no scope, every event.
        mine = f" AND attempt_id IN (SELECT id FROM attempts WHERE 1 = 1{cond})" if params else ""
        one = lambda sql: conn.execute(sql, params).fetchone()[0] or 0  # noqa: E731
        messages = one(f"SELECT COUNT(*) FROM attempts WHERE 1 = 1{cond}")
        # A click is an open too: the reader saw the message, with its images blocked or not.
        unique_opens = one(f"SELECT COUNT(DISTINCT attempt_id) FROM events WHERE type IN ('open', 'click'){mine}")
        # One view is one open however many images it loads: a view loads the pixel
        # once, so count pixel loads, plus one for a copy whose images or clicks alone were seen.
        total_opens = one(f"SELECT COUNT(*) FROM events WHERE type = 'open' AND kind = 'pixel'{mine}") + one(
            "SELECT COUNT(DISTINCT attempt_id) FROM events e WHERE (type = 'click' OR (type = 'open' AND kind = 'image'))"
            " AND NOT EXISTS"
            " (SELECT 1 FROM events p WHERE p.attempt_id = e.attempt_id AND p.type = 'open' AND p.kind = 'pixel')"
            f"{mine}")
        unique_clicks = one(f"SELECT COUNT(DISTINCT attempt_id) FROM events WHERE type = 'click'{mine}")
        total_clicks = one(f"SELECT COUNT(*) FROM events WHERE type = 'click'{mine}")
        best = [
            {"url": url, "unique_clicks": u, "total_clicks": t,
             "share": (u / unique_clicks) if unique_clicks else 0.0}
            for url, u, t in conn.execute(
                "SELECT url, COUNT(DISTINCT attempt_id) AS u, COUNT(*) AS t FROM events WHERE type = 'click'"
                f"{mine} GROUP BY url ORDER BY u DESC, t DESC, url LIMIT ?", (*params, limit))
        ]
        rate = lambda n, d: (n / d) if d else 0.0  # noqa: E731
        return {
            "messages": messages, "unique_opens": unique_opens, "total_opens": total_opens,
            "unique_clicks": unique_clicks, "total_clicks": total_clicks,
            "open_rate": rate(unique_opens, messages), "click_rate": rate(unique_clicks, messages),
            "click_to_open_rate": rate(unique_clicks, unique_opens), "best_links": best,
        }
