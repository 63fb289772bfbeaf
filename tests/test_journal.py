"""The event journal of a serving process: appended in the request, stored by its mover, adopted after a crash."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from clicktrail import journal, logstore
from clicktrail.logstore import Event, Store


def serving(tmp_path: Path) -> Store:
    store = Store(str(tmp_path / "j.db"), str(tmp_path / "j.db.spool"))
    store.serve()
    store.migrate()
    return store


def stored(store: Store) -> list[str]:
    return [ua for (ua,) in store._connect().execute("SELECT user_agent FROM events ORDER BY seq")]


def journal_files(store: Store) -> list[str]:
    return sorted(n for n in os.listdir(store.journal_folder) if n.endswith(".jsonl"))


def writer(db: str, events: int, then: str) -> subprocess.Popen[str]:
    """Another process serving the same store: appends ``events`` events, says 'ready', then ``then``."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from clicktrail.logstore import Event, Store
        store = Store({db!r}, {db!r} + ".spool")
        store.serve()
        store._mover_here = lambda: type("Asleep", (), {{"nudge": lambda self: None}})()  # no mover: all waits
        for i in range({events}):
            store.add_event(Event("click", 7, 1, "https://e.com/", user_agent=f"other-{{i}}"))
        print("ready", flush=True)
        {then}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_an_event_is_in_the_journal_when_add_event_returns_and_then_in_the_database(tmp_path: Path) -> None:
    store = serving(tmp_path)
    assert store.add_event(Event("click", 1, 1, "https://e.com/", user_agent="a")) is True
    (name,) = journal_files(store)
    assert name.startswith(f"{os.getpid()}-")
    assert b'"a"' in (Path(store.journal_folder) / name).read_bytes()
    store.settle()
    assert stored(store) == ["a"]
    store.settle()
    assert stored(store) == ["a"]  # moved once


def test_a_journal_left_by_a_killed_process_is_adopted_exactly_once(tmp_path: Path) -> None:
    store = serving(tmp_path)
    proc = writer(store.path, 5, "os._exit(0)")  # no clean exit: nothing moved
    proc.communicate(timeout=10)
    assert len(journal_files(store)) == 1 and stored(store) == []
    assert Store(store.path, store.spool).replay() == 5
    assert stored(store) == [f"other-{i}" for i in range(5)]
    assert journal_files(store) == []
    assert Store(store.path, store.spool).replay() == 0


def test_a_live_process_journal_is_read_but_left_to_its_owner(tmp_path: Path) -> None:
    store = serving(tmp_path)
    proc = writer(store.path, 3, "time.sleep(60)")
    try:
        reader = Store(store.path, store.spool)
        assert [e["user_agent"] for e in reader.events("click")] == ["other-0", "other-1", "other-2"]
        assert len(journal_files(store)) == 1  # still its owner's
        store._adopt_orphans()
        assert len(journal_files(store)) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    store._adopt_orphans()  # now an orphan: stored again changes nothing, and it goes
    assert journal_files(store) == []
    assert stored(store) == ["other-0", "other-1", "other-2"]


def test_a_torn_last_line_of_a_dead_journal_is_not_stored(tmp_path: Path) -> None:
    store = serving(tmp_path)
    folder = Path(store.journal_folder)
    folder.mkdir(exist_ok=True)
    row = '["e1", "click", null, "2026-12-03T10:00:00.000000+00:00", 7, 1, "https://e.com/", null, "whole", null]\n'
    (folder / "999999-1.jsonl").write_text(row + '["e2", "click", nu')
    assert store.replay() == 1
    assert stored(store) == ["whole"]


def test_journal_files_rotate_once_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "ROTATE_BYTES", 1000)
    store = serving(tmp_path)
    for i in range(60):
        store.add_event(Event("click", 1, 1, "https://e.com/", user_agent=f"u{i}"))
        if i % 7 == 0:
            store.settle()
    store.settle()
    assert stored(store) == [f"u{i}" for i in range(60)]
    (current,) = journal_files(store)
    assert int(current.split("-")[-1].split(".")[0]) > 3  # several files came and went


def test_without_a_writable_journal_events_go_straight_to_the_database(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "j.db"), str(tmp_path / "j.db.spool"))
    store.serve()
    store.migrate()
    Path(store.journal_folder).write_text("not a folder")
    assert store.add_event(Event("click", 1, 1, "https://e.com/", user_agent="direct")) is True
    assert stored(store) == ["direct"]


def test_a_new_process_with_a_dead_ones_pid_never_takes_its_journal(tmp_path: Path) -> None:
    store = serving(tmp_path)
    folder = Path(store.journal_folder)
    folder.mkdir(exist_ok=True)
    row = '["dead-1", "click", null, "2026-12-03T10:00:00.000000+00:00", 7, 1, "https://e.com/", null, "{}", null]\n'
    for name in (f"{os.getpid()}-1.jsonl", f"{os.getpid()}-abc-1.jsonl"):  # as an earlier process of this pid left them
        (folder / name).write_text(row.format(name).replace("dead-1", name))
    store.add_event(Event("click", 7, 1, "https://e.com/", user_agent="new"))
    assert len(journal_files(store)) == 3
    assert Store(store.path, store.spool).replay() >= 2  # the live one's mover may have stored its own already
    assert sorted(stored(store)) == sorted([f"{os.getpid()}-1.jsonl", f"{os.getpid()}-abc-1.jsonl", "new"])


def test_threads_racing_for_the_first_event_share_one_journal_and_lose_nothing(tmp_path: Path) -> None:
    for trial in range(5):
        (tmp_path / str(trial)).mkdir()
        store = serving(tmp_path / str(trial))
        start = threading.Barrier(8)

        def first_event(i: int, store: Store = store, start: threading.Barrier = start) -> None:
            start.wait()
            store.add_event(Event("click", 7, 1, "https://e.com/", user_agent=f"t{i}"))

        threads = [threading.Thread(target=first_event, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert not any(t.is_alive() for t in threads)  # none blocked on another's journal
        assert len(journal_files(store)) == 1
        store.settle()
        assert sorted(stored(store)) == sorted(f"t{i}" for i in range(8))


def test_lines_the_database_refuses_are_set_aside_and_the_rest_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logstore, "ADOPT_SECONDS", 0.05)
    store = serving(tmp_path)
    folder = Path(store.journal_folder)
    folder.mkdir(exist_ok=True)
    ts = "2026-12-03T10:00:00.000000+00:00"
    lines = [
        f'["e1", "click", null, "{ts}", 7, 1, "https://e.com/", null, "before", null]',
        f'["e2", "click", null, "{ts}", 7, 1, "https://e.com/\\udc80", null, "surrogate", null]',  # repaired
        f'["e3", null, null, "{ts}", 7, 1, "https://e.com/", null, "no type", null]',  # NOT NULL: refused
        f'["e4", "click", null, "{ts}", 7, 1, {{"a": 1}}, null, "a mapping", null]',  # cannot be bound: refused
        f'["e5", "click", null, "{ts}", {2**70}, 1, "https://e.com/", null, "too big", null]',  # refused
        "not json at all",
        f'["e6", "click", null, "{ts}", 7, 1, "https://e.com/", null, "after", null]',
    ]
    (folder / "999999-dead-1.jsonl").write_text("\n".join(lines) + "\n")
    store.add_event(Event("click", 7, 1, "https://e.com/", user_agent="live"))  # starts the mover, which adopts
    for _ in range(200):
        if journal_files(store) == [n for n in journal_files(store) if n.startswith(f"{os.getpid()}-")]:
            break
        time.sleep(0.05)
    store.settle()
    assert sorted(stored(store)) == ["after", "before", "live", "surrogate"]
    urls = [u for (u,) in store._connect().execute("SELECT url FROM events WHERE user_agent = 'surrogate'")]
    assert urls == ["https://e.com/\ufffd"]
    rejected = (folder / logstore.REJECTED).read_text().splitlines()
    assert len(rejected) == 4 and "not json at all" in rejected
    assert any(t.name == "clicktrail-mover" for t in threading.enumerate())


def test_a_serving_process_replays_its_spool_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logstore, "ADOPT_SECONDS", 0.05)
    store = serving(tmp_path)
    store._spool(Event("click", 7, 1, "https://e.com/", user_agent="spooled"))  # as when the store was failing
    store.add_event(Event("click", 7, 1, "https://e.com/", user_agent="later"))
    for _ in range(200):
        if Path(store.spool).stat().st_size == 0:
            break
        time.sleep(0.05)
    store.settle()
    assert sorted(stored(store)) == ["later", "spooled"]


def test_no_thread_is_started_before_the_first_write(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import threading
        from clicktrail.tracker import create_app
        create_app({{"database": {str(tmp_path / "p.db")!r}, "secret_key": "k"}})
        print(sorted(t.name for t in threading.enumerate()))
    """)  # what gunicorn --preload runs in its master before it forks the workers
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['MainThread']"


def test_a_short_journal_write_is_taken_back_and_the_event_stored_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = serving(tmp_path)
    store.add_event(Event("click", 7, 1, "https://e.com/", user_agent="first"))
    real_write = os.write
    monkeypatch.setattr(journal.os, "write", lambda fd, data: real_write(fd, data[:10]))  # the disk filled up
    assert store.add_event(Event("click", 7, 1, "https://e.com/", user_agent="second")) is True
    monkeypatch.undo()
    store.settle()
    assert sorted(stored(store)) == ["first", "second"]
    assert store._journal is not None
    assert Path(store._journal.path).read_bytes().count(b"\n") == 1  # the torn line is gone


def test_a_raw_log_read_is_refused_rather_than_short_while_the_database_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clicktrail.errors import StoreUnavailable

    monkeypatch.setattr(logstore, "BUSY_MS", 200)
    store = serving(tmp_path)
    proc = writer(store.path, 3, "time.sleep(60)")  # acknowledged, still in its live journal
    try:
        lock = sqlite3.connect(store.path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the database
        reader = Store(store.path, store.spool)
        with pytest.raises(StoreUnavailable, match="try again"):
            list(reader.events("click"))
        lock.execute("ROLLBACK")
        assert [e["user_agent"] for e in reader.events("click")] == ["other-0", "other-1", "other-2"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
