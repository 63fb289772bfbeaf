"""The event journal of a serving process: appended in the request, stored by its mover, adopted after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clicktrail import journal
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
    assert int(current.split("-")[1].split(".")[0]) > 3  # several files came and went


def test_without_a_writable_journal_events_go_straight_to_the_database(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "j.db"), str(tmp_path / "j.db.spool"))
    store.serve()
    store.migrate()
    Path(store.journal_folder).write_text("not a folder")
    assert store.add_event(Event("click", 1, 1, "https://e.com/", user_agent="direct")) is True
    assert stored(store) == ["direct"]
