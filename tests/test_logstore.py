"""logstore: migrations, concurrent writers, the spool when the database fails."""

import multiprocessing
import os
import sqlite3
from pathlib import Path

from clicktrail.logstore import MIGRATIONS, Attempt, Event, Store, attempt_key, new_id, parse_attempt_key


def make_store(tmp_path: Path) -> Store:
    store = Store(str(tmp_path / "s.db"), str(tmp_path / "s.db.spool"))
    store.migrate()
    return store


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    assert store.migrate() == MIGRATIONS[-1][0]
    versions = [v for (v,) in store.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in MIGRATIONS]
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"


def test_message_links_and_lookup(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    a, b = new_id(), new_id()
    store.record_message([("click", "https://e.com/1"), ("image", "https://e.com/i.png")],
                         [Attempt(a, "x@e.com", "S", "<m@e>", "t"), Attempt(b, "y@e.com")])
    assert store.link(a, 1) == ("click", "https://e.com/1")
    assert store.link(b, 2) == ("image", "https://e.com/i.png")
    assert store.link(a, 0) == ("pixel", "")
    assert store.link(a, 3) is None and store.link(new_id(), 1) is None
    rows = list(store.attempts())
    assert {r["recipient"] for r in rows} == {"x@e.com", "y@e.com"}
    assert rows[0]["links"] == ["https://e.com/1"]


def test_attempt_keys_round_trip() -> None:
    n = new_id()
    assert parse_attempt_key(attempt_key(n)) == n
    assert parse_attempt_key("zz") is None and parse_attempt_key("0" * 16) is None


def _writer(path: str, n: int) -> None:
    store = Store(path, path + ".spool")
    for i in range(n):
        store.add_event(Event("click", 1, 1, "https://e.com/", ip=str(os.getpid()), user_agent=str(i)))


def test_several_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ctx = multiprocessing.get_context("spawn")  # fork would copy other tests' threads mid-lock
    procs = [ctx.Process(target=_writer, args=(store.path, 300)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM events")[0] == (1200, 1200)
    assert store.query("PRAGMA integrity_check")[0][0] == "ok"


def test_failed_write_goes_to_the_spool_and_is_replayed_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    blocker = sqlite3.connect(store.path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    quick = Store(store.path, store.spool)
    quick._connect().execute("PRAGMA busy_timeout = 50")
    event = Event("click", 7, 1, "https://e.com/")
    assert quick.add_event(event) is False
    assert Path(store.spool).read_text().count("\n") == 1
    blocker.rollback()
    blocker.close()
    assert store.replay() == 1
    assert store.replay() == 0
    assert store.query("SELECT event_id, url FROM events") == [(event.event_id, "https://e.com/")]
    # Replaying the same line again (e.g. after a crash mid-replay) does not duplicate it.
    Path(store.spool).write_text(Path(store.spool).read_text() or "")
    store._spool(event)
    assert store.replay() == 1
    assert store.query("SELECT COUNT(*) FROM events")[0][0] == 1


def test_next_successful_write_replays_the_spool(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    spooled = Event("open", 3, 0, kind="pixel")
    store._spool(spooled)
    assert store.add_event(Event("click", 3, 1, "https://e.com/")) is True
    assert store.query("SELECT COUNT(*) FROM events")[0][0] == 2
    assert Path(store.spool).stat().st_size == 0


def test_stats_count_views_not_image_loads(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ids = [new_id() for _ in range(4)]
    store.record_message([("click", "https://e.com/a"), ("image", "https://e.com/i.png")], [Attempt(i, None) for i in ids])
    # Copy 0: one view (pixel + image) twice. Copy 1: images only (pixel blocked). Copies 2, 3: nothing opened.
    for _ in range(2):
        store.add_event(Event("open", ids[0], 0, kind="pixel"))
        store.add_event(Event("open", ids[0], 2, "https://e.com/i.png", kind="image"))
    store.add_event(Event("open", ids[1], 2, "https://e.com/i.png", kind="image"))
    store.add_event(Event("open", ids[1], 2, "https://e.com/i.png", kind="image"))
    for _ in range(3):
        store.add_event(Event("click", ids[0], 1, "https://e.com/a"))
    s = store.stats()
    assert (s["messages"], s["unique_opens"], s["total_opens"]) == (4, 2, 3)
    assert (s["unique_clicks"], s["total_clicks"]) == (1, 3)
    assert s["open_rate"] == 0.5 and s["click_rate"] == 0.25 and s["click_to_open_rate"] == 0.5
    assert s["best_links"] == [{"url": "https://e.com/a", "unique_clicks": 1, "total_clicks": 3, "share": 1.0}]
