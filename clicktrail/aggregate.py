"""The aggregation step: fold new events into the dashboard's summary tables.

events (by ``seq``, past the high-water mark) → per-copy state (first open,
first click, pixel seen, first image) → deltas per UTC hour × tag, and per
hour (and per day) × tag × URL → summary tables; attempts → messages sent per
hour × tag.  The dashboard reads only the summaries, so a page costs the same
at a thousand or a million events.

Counting rules: a click is an open too (the reader saw the message, images
blocked or not), so a total open is a pixel load, plus one for a copy whose
images or clicks alone were seen (withdrawn when its pixel arrives); a unique
open is one per copy opened or clicked, a unique click one per copy clicked,
each counted in the hour of the copy's first one (moved if a replayed event
turns out to be earlier).  So click-to-open never passes 100 %.

Every worker may run the step on a timer, and ``clicktrail aggregate`` may
run beside them: a batch commits only if the high-water mark is still the one
it started from (a ``CHECK`` makes the guard fail otherwise), so no event is
ever counted twice.  Batches are small because event writes wait at most a
moment for the database before going to the spool.  SQLite commits one writer
at a time, so ``seq`` order is commit order and no event can appear behind the
mark; a PostgreSQL backend would have to keep the mark behind transactions
still in flight.
"""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ClicktrailError
from .logstore import Store, utcnow

log = logging.getLogger(__name__)

BATCH = 500
CHUNK = 400  # ids per IN (...) list

# The summary tables are created by migration 4 in logstore.MIGRATIONS.
_GUARD = ("UPDATE agg_state SET seq = CASE WHEN seq = ? THEN ? ELSE -1 END, updated_at = ?"
          " WHERE name = 'events'")
_PUT_ATTEMPT = (
    "INSERT INTO agg_attempts (attempt_id, tag, first_open, first_click, first_image, pixels, clicks)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (attempt_id) DO UPDATE SET first_open = excluded.first_open,"
    " first_click = excluded.first_click, first_image = excluded.first_image, pixels = excluded.pixels,"
    " clicks = excluded.clicks")
_PUT_LINK_FIRST = ("INSERT INTO agg_link_first (attempt_id, url_id, ts) VALUES (?, ?, ?)"
                   " ON CONFLICT (attempt_id, url_id) DO UPDATE SET ts = excluded.ts")
_PUT_URL = "INSERT INTO agg_urls (url_id, url) VALUES (?, ?) ON CONFLICT (url_id) DO NOTHING"
_ADD_HOUR = (
    "INSERT INTO agg_hours (hour, tag, opens, unique_opens, clicks, unique_clicks) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (hour, tag) DO UPDATE SET opens = agg_hours.opens + excluded.opens,"
    " unique_opens = agg_hours.unique_opens + excluded.unique_opens, clicks = agg_hours.clicks + excluded.clicks,"
    " unique_clicks = agg_hours.unique_clicks + excluded.unique_clicks")
_ADD_LINK_HOUR = (
    "INSERT INTO agg_link_hours (hour, tag, url_id, clicks, unique_clicks) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (hour, tag, url_id) DO UPDATE SET clicks = agg_link_hours.clicks + excluded.clicks,"
    " unique_clicks = agg_link_hours.unique_clicks + excluded.unique_clicks")
_ADD_LINK_DAY = (
    "INSERT INTO agg_link_days (day, tag, url_id, clicks, unique_clicks) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (day, tag, url_id) DO UPDATE SET clicks = agg_link_days.clicks + excluded.clicks,"
    " unique_clicks = agg_link_days.unique_clicks + excluded.unique_clicks")
_ADD_SENT = ("INSERT INTO agg_sent (hour, tag, messages) VALUES (?, ?, ?)"
             " ON CONFLICT (hour, tag) DO UPDATE SET messages = agg_sent.messages + excluded.messages")
SUMMARY_TABLES = ("agg_attempts", "agg_hours", "agg_urls", "agg_link_first", "agg_link_hours", "agg_link_days",
                  "agg_sent")
# Attempts carry no sequence number, only the time they were stamped, a moment
# before they are written: fold them only once their hour is this far behind.
SENT_LAG = timedelta(hours=1)


def url_id(url: str) -> int:
    """A stable 63-bit id for a URL, so summaries key on a number, not on long text."""
    return int.from_bytes(hashlib.sha256(url.encode("utf-8", "surrogatepass")).digest()[:8], "big") >> 1


def utc_ts(ts: str) -> str:
    """An event time in the stored UTC form (times written elsewhere may carry another offset)."""
    if ts.endswith("+00:00"):
        return ts
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def hour_of(ts: str) -> str:
    """The UTC hour bucket of a stored time: ``YYYY-MM-DDTHH``."""
    return ts[:13]


def high_water(store: Store, name: str = "events") -> int:
    """The seq of the last event folded into the summaries (for attempts: the UTC epoch second up to which)."""
    return int(store.query("SELECT seq FROM agg_state WHERE name = ?", (name,))[0][0])


def sent_until(store: Store) -> datetime:
    """Attempts stamped before this time are counted in ``agg_sent``; later ones are counted live."""
    return datetime.fromtimestamp(high_water(store, "attempts"), UTC)


@dataclass
class _Copy:
    """What the summaries know about one copy (attempt)."""

    tag: str
    first_open: str | None = None
    first_click: str | None = None
    first_image: str | None = None
    pixels: int = 0
    clicks: int = 0


def _implied(c: _Copy) -> str | None:
    """When a copy's one open without a pixel load counts: its first image or click; None once its pixel came."""
    if c.pixels:
        return None
    seen = [t for t in (c.first_image, c.first_click) if t is not None]
    return min(seen) if seen else None


class _Batch:
    """Deltas of one batch, applied in memory first."""

    def __init__(self, copies: dict[int, _Copy], link_first: dict[tuple[int, int], str]) -> None:
        self.copies, self.link_first = copies, link_first
        self.hours: dict[tuple[str, str], list[int]] = {}
        self.link_hours: dict[tuple[str, str, int], list[int]] = {}
        self.urls: dict[int, str] = {}
        self.touched: set[int] = set()
        self.touched_links: set[tuple[int, int]] = set()

    def _hour(self, ts: str, tag: str, col: int, n: int) -> None:
        self.hours.setdefault((hour_of(ts), tag), [0, 0, 0, 0])[col] += n

    def _first(self, old: str | None, ts: str, tag: str, col: int) -> str:
        """Count a unique in the hour of the earliest time; move it if this one is earlier."""
        if old is not None and old <= ts:
            return old
        if old is not None:
            self._hour(old, tag, col, -1)
        self._hour(ts, tag, col, +1)
        return ts

    def _implied_open(self, c: _Copy, before: str | None) -> None:
        """Move the one total open a copy without a pixel load has (at its first image or click)."""
        after = _implied(c)
        if after != before:
            if before is not None:
                self._hour(before, c.tag, 0, -1)
            if after is not None:
                self._hour(after, c.tag, 0, +1)

    def open(self, aid: int, c: _Copy, ts: str, kind: str | None) -> None:
        before = _implied(c)
        c.first_open = self._first(c.first_open, ts, c.tag, 1)
        if kind == "pixel":
            self._hour(ts, c.tag, 0, +1)
            c.pixels += 1
        elif kind == "image":
            c.first_image = min(c.first_image or ts, ts)
        self._implied_open(c, before)

    def click(self, aid: int, c: _Copy, ts: str, url: str) -> None:
        before = _implied(c)
        c.first_open = self._first(c.first_open, ts, c.tag, 1)  # a click is an open
        c.first_click = self._first(c.first_click, ts, c.tag, 3)
        self._implied_open(c, before)
        c.clicks += 1
        self._hour(ts, c.tag, 2, +1)
        uid = url_id(url)
        self.urls[uid] = url
        key = (aid, uid)
        old = self.link_first.get(key)
        row = self.link_hours.setdefault((hour_of(ts), c.tag, uid), [0, 0])
        row[0] += 1
        if old is None or ts < old:
            row[1] += 1
            if old is not None:
                self.link_hours.setdefault((hour_of(old), c.tag, uid), [0, 0])[1] -= 1
            self.link_first[key] = ts
            self.touched_links.add(key)


def _load(store: Store, events: list[tuple[Any, ...]]) -> _Batch:
    ids = sorted({e[4] for e in events})
    copies: dict[int, _Copy] = {}
    link_first: dict[tuple[int, int], str] = {}
    for i in range(0, len(ids), CHUNK):
        part = ids[i:i + CHUNK]
        marks = ",".join("?" * len(part))
        for aid, tag, fo, fc, fi, px, cl in store.query(
                "SELECT attempt_id, tag, first_open, first_click, first_image, pixels, clicks FROM agg_attempts"
                f" WHERE attempt_id IN ({marks})", part):
            copies[aid] = _Copy(tag, fo, fc, fi, px, cl)
        for aid, uid, ts in store.query(
                f"SELECT attempt_id, url_id, ts FROM agg_link_first WHERE attempt_id IN ({marks})", part):
            link_first[(aid, uid)] = ts
    return _Batch(copies, link_first)


def fold_batch(store: Store, limit: int = BATCH) -> int:
    """Fold up to ``limit`` events past the high-water mark; return how many were read (0: none new)."""
    start = high_water(store)
    rows = store.query(
        "SELECT e.seq, e.type, e.kind, e.ts, e.attempt_id, e.url, a.tag FROM events e"
        " LEFT JOIN attempts a ON a.id = e.attempt_id WHERE e.seq > ? ORDER BY e.seq LIMIT ?", (start, limit))
    if not rows:
        return 0
    events = [r for r in rows if r[1] in ("open", "click") and r[4] is not None]
    batch = _load(store, events)
    for _seq, type_, kind, ts, aid, url, tag in events:
        c = batch.copies.get(aid)
        if c is None:
            c = batch.copies[aid] = _Copy(tag or "")
        batch.touched.add(aid)
        ts = utc_ts(ts)
        if type_ == "open":
            batch.open(aid, c, ts, kind)
        else:
            batch.click(aid, c, ts, url or "")
    end = rows[-1][0]
    copies = batch.copies
    days: dict[tuple[str, str, int], list[int]] = {}
    for (h, t, u), v in batch.link_hours.items():
        day = days.setdefault((h[:10], t, u), [0, 0])
        day[0], day[1] = day[0] + v[0], day[1] + v[1]
    try:
        store.write([
            (_GUARD, [(start, end, utcnow())]),
            (_PUT_ATTEMPT, [(a, copies[a].tag, copies[a].first_open, copies[a].first_click, copies[a].first_image,
                             copies[a].pixels, copies[a].clicks) for a in sorted(batch.touched)]),
            (_PUT_LINK_FIRST, [(a, u, batch.link_first[(a, u)]) for a, u in sorted(batch.touched_links)]),
            (_PUT_URL, sorted(batch.urls.items())),
            (_ADD_HOUR, [(h, t, *v) for (h, t), v in sorted(batch.hours.items()) if any(v)]),
            (_ADD_LINK_HOUR, [(h, t, u, *v) for (h, t, u), v in sorted(batch.link_hours.items()) if any(v)]),
            (_ADD_LINK_DAY, [(d, t, u, *v) for (d, t, u), v in sorted(days.items()) if any(v)]),
        ])
    except sqlite3.IntegrityError:
        log.debug("events %d..%d were folded by another worker meanwhile", start + 1, end)
        return 0
    return len(rows)


def fold_sent(store: Store, now: datetime | None = None, check: bool = True) -> int:
    """Count the attempts of whole hours past the lag into ``agg_sent``; return how many.

    Attempts written late (stamped before the mark) are found by comparing
    totals, which reads every attempt's index entry: done when asked, and
    whenever the mark moves (once an hour).
    """
    start = mark = high_water(store, "attempts")
    end = max(start, int((now or datetime.now(UTC)).timestamp() - SENT_LAG.total_seconds()) // 3600 * 3600)
    if end == start and not check:
        return 0
    stamp = lambda t: datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")  # noqa: E731
    counted = store.query("SELECT SUM(messages) FROM agg_sent")[0][0] or 0
    there = store.query("SELECT COUNT(*) FROM attempts WHERE ts < ?", (stamp(start),))[0][0]
    statements: list[tuple[str, Any]] = []
    if counted != there:  # attempts written late, stamped before the mark: count every hour again
        start = 0
        statements.append(("DELETE FROM agg_sent", [()]))
    elif end == start:
        return 0
    rows = store.query("SELECT SUBSTR(ts, 1, 13), tag, COUNT(*) FROM attempts WHERE ts >= ? AND ts < ?"
                       " GROUP BY SUBSTR(ts, 1, 13), tag", (stamp(start), stamp(end)))
    counts: dict[tuple[str, str], int] = {}
    for hour, tag, n in rows:
        counts[(hour, tag or "")] = counts.get((hour, tag or ""), 0) + int(n)
    try:
        store.write([(_GUARD.replace("'events'", "'attempts'"), [(mark, end, utcnow())]), *statements,
                     (_ADD_SENT, [(h, t, n) for (h, t), n in sorted(counts.items())])])
    except sqlite3.IntegrityError:
        return 0
    return sum(counts.values())


def fold(store: Store, max_batches: int | None = None, check: bool = True) -> int:
    """Fold every event past the high-water mark (or up to ``max_batches`` batches); return how many."""
    store.catch_up()  # every event acknowledged so far, whichever process's journal holds it
    fold_sent(store, check=check)
    total = batches = 0
    while max_batches is None or batches < max_batches:
        n = fold_batch(store)
        if not n:
            break
        total, batches = total + n, batches + 1
    return total


def rebuild(store: Store) -> int:
    """Empty the summaries and fold every event again; return how many were folded."""
    store.write([(f"DELETE FROM {t}", [()]) for t in SUMMARY_TABLES]
                + [("UPDATE agg_state SET seq = 0, updated_at = ?", [(utcnow(),)])])
    return fold(store)


def pending(store: Store) -> int:
    """How many events wait to be folded (an upper bound: seq may have gaps)."""
    last = store.query("SELECT MAX(seq) FROM events")[0][0] or 0
    return max(0, int(last) - high_water(store))


class Timer:
    """Run the aggregation step every ``interval`` seconds in a daemon thread of this process."""

    def __init__(self, store: Store, interval: float, alive: Callable[[], bool] = lambda: True) -> None:
        self.store, self.interval, self.alive = store, interval, alive
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="clicktrail-aggregate", daemon=True).start()

    def _run(self) -> None:
        # Jitter keeps several workers from reading the same batch at the same moment.
        jitter = random.Random()  # its own generator: a background thread must not move the global one
        while not self.stop.wait(self.interval * jitter.uniform(0.8, 1.2)) and self.alive():
            try:
                # A bounded number of batches per tick keeps the thread polite under a backlog.
                fold(self.store, max_batches=200, check=False)
            except (sqlite3.Error, ClicktrailError, ValueError) as e:
                log.warning("aggregation step failed, will retry: %s", e)
            finally:
                self.store.close()  # this thread's connection; reopened next tick
