"""Helpers for the reliability tests: seed tracked links, drive many clients, read the log.

The tests that use them (test_concurrency, test_crash, test_store_failure,
test_forgery, test_injection) check outcomes, never timings.  A new tracked
route (say, a domain-scoped click) gets the same guarantees by seeding its
links here and reusing ``hammer``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from clicktrail.logstore import Attempt, Store, new_id
from clicktrail.rewrite import CLICK
from clicktrail.tokens import PIXEL, Signer


@dataclass
class Seeded:
    """One recorded message copy: its attempt id and the identifier of each link (0 is the pixel)."""

    attempt_id: int
    urls: list[str]
    tokens: dict[int, str] = field(default_factory=dict)

    def path(self, idx: int) -> str:
        """The request path of link ``idx`` (1-based) or of the pixel (0)."""
        return f"/{self.tokens[idx]}/o.gif" if idx == PIXEL else f"/{self.tokens[idx]}/shown/path"


def seed(store: Store, signer: Signer, urls: Sequence[str], recipient: str = "reader@example.com",
         subject: str | None = "Load test", tag: str | None = "load",
         kinds: Sequence[str] | None = None) -> Seeded:
    """Record one message copy with these link URLs, as the rewriter would, and mint its identifiers."""
    aid = new_id()
    kinds = kinds or [CLICK] * len(urls)
    store.record_message(list(zip(kinds, urls, strict=True)), [Attempt(aid, recipient, subject, None, tag)])
    s = Seeded(aid, list(urls))
    for idx in range(len(urls) + 1):
        s.tokens[idx] = signer.mint(aid, idx)
    return s


@dataclass
class Outcome:
    """What one client request got: the status, or None if the connection failed."""

    marker: str
    path: str
    status: int | None
    location: str | None = None


def hammer(base: str, jobs: Iterable[tuple[str, str]], threads: int = 16,
           stop: threading.Event | None = None, on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """GET every (path, marker) from ``threads`` clients at once; the marker goes in the User-Agent."""
    queue = list(jobs)
    lock = threading.Lock()
    results: list[Outcome] = []

    def client() -> None:
        with requests.Session() as http:
            while not (stop and stop.is_set()):
                with lock:
                    if not queue:
                        return
                    path, marker = queue.pop()
                try:
                    r = http.get(base + path, headers={"User-Agent": marker}, allow_redirects=False, timeout=30)
                    out = Outcome(marker, path, r.status_code, r.headers.get("Location"))
                except requests.RequestException:
                    out = Outcome(marker, path, None)
                    http.close()  # a broken keep-alive connection is not reused
                with lock:
                    results.append(out)
                if on_done:
                    on_done(out)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def logged(db: str, type_: str = "click", spool: str | None = None
           ) -> list[tuple[str, str | None, int | None, str | None]]:
    """Every logged event of a type as (event id, user agent, link index, url), read with a fresh connection.

    First the store catches up on the serving processes' journals, as a raw-log read does.
    """
    Store(db, spool or db + ".spool").catch_up()
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT event_id, user_agent, link_idx, url FROM events WHERE type = ? ORDER BY seq", (type_,)).fetchall()
    finally:
        conn.close()


def integrity(db: str) -> str:
    """The result of PRAGMA integrity_check on a fresh connection ('ok' when sound)."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def waiting(db: str, spool: str | None = None) -> int:
    """How many acknowledged events are not in the database yet: in the spool or a journal, and not stored."""
    spool = spool or db + ".spool"
    folder = spool + ".journal"
    paths = [spool] + ([os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jsonl")]
                       if os.path.isdir(folder) else [])
    ids = set()
    for path in paths:
        try:
            with open(path, "rb") as f:
                for line in f:
                    if line.strip():
                        value = json.loads(line)
                        ids.add(value[0] if isinstance(value, list) else value["event_id"])
        except FileNotFoundError:
            continue
    conn = sqlite3.connect(db)
    try:
        stored = {e for (e,) in conn.execute("SELECT event_id FROM events")}
    finally:
        conn.close()
    return len(ids - stored)


def wait_stored(db: str, spool: str | None = None, seconds: float = 15.0) -> None:
    """Wait until every acknowledged event is in the database (the serving processes move them)."""
    deadline = time.monotonic() + seconds
    while (left := waiting(db, spool)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == 0, f"{left} acknowledged events still not in the database after {seconds} s"


def spooled_lines(spool: str) -> int:
    """How many events wait in the spool file."""
    try:
        with open(spool, "rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (gunicorn's workers), read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the parent pid follows it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def log_in(client: Any, password: str) -> None:
    """Log a Flask test client in through the real login form (CSRF token and all)."""
    form = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token, form
    r = client.post("/login", data={"csrf": token.group(1), "password": password, "user": ""})
    assert r.status_code in (302, 303), r.status_code
