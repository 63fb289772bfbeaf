"""The store fails (locked, read-only, disk full): readers still land, events wait in the journals, none is lost.

Each failure is real: another process's exclusive lock, a read-only mount, a
full tmpfs.  The spool and the journals beside it live on another file
system than the database (the deployment this guarantees; see README, Logs).
Mounting needs root; without it those two cases are skipped and say why.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability import Seeded, hammer, logged, seed, wait_stored, waiting
from servers import gunicorn

from clicktrail.tracker import Clicktrail

pytestmark = pytest.mark.slow

CLICKS, PIXELS = 6, 4


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    """The database in its own folder (a mount point), the spool elsewhere."""
    (tmp_path / "data").mkdir()
    (tmp_path / "spool").mkdir()
    return {
        "click_domain": "https://clicks.example.com",
        "database": str(tmp_path / "data" / "ct.db"),
        "spool": str(tmp_path / "spool" / "events.spool"),
        "secret_key": "test-secret-key",
        "stats_password": "s3cret-pass",
    }


def mount(*args: str) -> None:
    """Run mount(8); skip the test when this process may not mount."""
    if os.geteuid() != 0:
        pytest.skip("simulating a read-only or full file system needs root (mount)")
    r = subprocess.run(["mount", *args], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"mount is not permitted here: {r.stderr.strip()}")


def umount(path: str) -> None:
    subprocess.run(["umount", "-l", path], capture_output=True)


@contextmanager
def locked(db: str) -> Iterator[None]:
    """Another process holds the write lock (BEGIN EXCLUSIVE); in WAL, readers still read."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    try:
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder ends, its lock goes with it
        holder.wait(10)
        holder.stdout.close()


def truncate_wal(db: str) -> None:
    """Checkpoint the database and cut its WAL file to nothing: the next write needs new disk space."""
    conn = sqlite3.connect(db)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the WAL could not be truncated"
    finally:
        conn.close()


def fill(folder: Path) -> Path:
    """Fill the file system holding ``folder`` to the last byte; return the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue
    return filler


def clicks_and_pixels(base: str, copy: Seeded, round_: str) -> None:
    """Click and open while the store is failing: every reader still lands."""
    jobs = [(copy.path(1 + n % 2), f"{round_}-click-{n}") for n in range(CLICKS)]
    jobs += [(copy.path(0), f"{round_}-pixel-{n}") for n in range(PIXELS)]
    results = hammer(base, jobs, threads=len(jobs))
    assert sorted((r.marker.split("-")[1], r.status) for r in results) == sorted(
        [("click", 302)] * CLICKS + [("pixel", 200)] * PIXELS)
    assert all(r.location == copy.urls[int(r.marker.rsplit("-", 1)[1]) % 2] for r in results if r.status == 302)


def assert_counts(db: str, clicks: int, opens: int) -> None:
    got_clicks, got_opens = logged(db, "click"), logged(db, "open")
    assert (len(got_clicks), len(got_opens)) == (clicks, opens)
    ids = [e for e, *_ in got_clicks + got_opens]
    assert len(ids) == len(set(ids))


def replay_cli(env: dict[str, str]) -> str:
    exe = str(Path(sys.executable).with_name("clicktrail"))
    r = subprocess.run([exe, "replay"], env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


@pytest.fixture
def copy(parts: Clicktrail) -> Seeded:
    return seed(parts.store, parts.signer, ["https://example.com/a?x=1", "https://example.com/b#frag"])


def stored(db: str) -> int:
    """Events in the database as it is (no catching up on the journals)."""
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def test_locked_database_journals_then_stores_automatically(copy: Seeded, env: dict[str, str],
                                                            settings: dict[str, Any]) -> None:
    db, spool = settings["database"], settings["spool"]
    with gunicorn(env, workers=2) as (base, _):
        with locked(db):
            clicks_and_pixels(base, copy, "locked")
            assert waiting(db, spool) == CLICKS + PIXELS and stored(db) == 0
        # The lock is gone: the workers move their journals in, nobody needs to click or replay.
        wait_stored(db, spool)
        assert_counts(db, CLICKS, PIXELS)
        assert requests.get(base + copy.path(1), allow_redirects=False, timeout=10).status_code == 302
        wait_stored(db, spool)
    assert_counts(db, CLICKS + 1, PIXELS)


def test_read_only_database_journals_then_stores_when_writable(copy: Seeded, env: dict[str, str],
                                                              settings: dict[str, Any]) -> None:
    db, spool = settings["database"], settings["spool"]
    data = str(Path(db).parent)
    mount("--bind", data, data)
    try:
        mount("-o", "remount,ro,bind", data)
        with pytest.raises(OSError):
            (Path(data) / "probe").write_text("")  # really read-only, even for root
        with gunicorn(env, workers=2) as (base, _):  # starts on a read-only database
            clicks_and_pixels(base, copy, "ro")
            assert waiting(db, spool) == CLICKS + PIXELS and stored(db) == 0
            mount("-o", "remount,rw,bind", data)
            # Writable again.  A worker's mover cannot write while its process holds the connection
            # opened read-only; the next request a worker answers lets go of it, and its mover stores
            # the journal.  Readers keep clicking until both workers have had one.
            extra = 0
            while waiting(db, spool) and extra < 40:
                assert requests.get(base + copy.path(2), allow_redirects=False, timeout=10).status_code == 302
                extra += 1
                time.sleep(0.1)
            wait_stored(db, spool)
        assert_counts(db, CLICKS + extra, PIXELS)
    finally:
        umount(data)


def test_full_disk_journals_then_clicktrail_replay_recovers(tmp_path: Path, env: dict[str, str],
                                                            settings: dict[str, Any]) -> None:
    from clicktrail.tracker import create_app

    data = tmp_path / "data"
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data))
    try:
        parts: Clicktrail = create_app(settings).extensions["clicktrail"]
        copy = seed(parts.store, parts.signer, ["https://example.com/a?x=1", "https://example.com/b#frag"])
        db, spool = settings["database"], settings["spool"]
        with gunicorn(env, workers=2) as (base, _):
            truncate_wal(db)  # else events may fit into WAL space SQLite already has, and the disk is never felt
            filler = fill(data)
            clicks_and_pixels(base, copy, "full")
            assert waiting(db, spool) == CLICKS + PIXELS
        # The server stopped while the disk was full: its journals wait.  Space again; the operator replays.
        filler.unlink()
        left = waiting(db, spool)
        assert left + stored(db) == CLICKS + PIXELS
        assert f"replayed {left} spooled events" in replay_cli(env)
        assert waiting(db, spool) == 0 and os.listdir(spool + ".journal") == []
        assert_counts(db, CLICKS, PIXELS)
        assert "replayed 0 spooled events" in replay_cli(env)  # idempotent
        assert_counts(db, CLICKS, PIXELS)
        parts.store.close()
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    finally:
        umount(str(data))
