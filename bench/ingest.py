"""Event ingestion: clicks per second into SQLite with 4 gunicorn workers, every one accounted for.

wrk gives each request its own User-Agent (thread id and a counter), so the
log can be checked request by request afterwards: no duplicate, no gap, and
at least as many events as answered requests (a request in flight when wrk
stops may be logged without its answer being counted).  Both settings of
CLICKTRAIL_SYNC run in this one run, side by side.

    .venv/bin/python bench/ingest.py [--workers 4] [--seconds 15] [--connections 32]

Target: >= 2,000 events/s, 0 lost.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sqlite3
import time
from collections import defaultdict

from harness import BARE, TRACKER, count, gunicorn, scratch, seed, unique_agent_script, wrk

from clicktrail.logstore import Event, Store


def check_log(database: str, spool: str, connections: int) -> tuple[int, int, int]:
    """(events in the database, events still spooled, requests lost); raises on a duplicate."""
    Store(database, spool).replay()  # journals left by the stopped workers, if any
    conn = sqlite3.connect(database)
    agents = [ua for (ua,) in conn.execute("SELECT user_agent FROM events WHERE type = 'click'")]
    conn.close()
    spooled = 0
    if os.path.exists(spool):
        with open(spool) as f:
            spooled = sum(1 for line in f if line.strip())
    assert len(agents) == len(set(agents)), "a request was logged twice"
    seen: dict[str, set[int]] = defaultdict(set)
    for ua in agents:
        m = re.fullmatch(r"t(\d+)-(\d+)", ua or "")
        assert m, ua
        seen[m.group(1)].add(int(m.group(2)))
    lost = 0
    for numbers in seen.values():
        top = max(numbers)
        # Only the last requests of a thread (those in flight when wrk stopped) may be missing.
        # Number 1 of the first thread is never sent: wrk calls request() once to check the script.
        lost += sum(1 for n in range(2, top - connections + 1) if n not in numbers)
    return len(agents), spooled, lost


def _writer(database: str, sync: bool, attempt: int, n: int, tag: str, start: float, journal: bool) -> None:
    store = Store(database, database + ".spool", sync=sync)
    if journal:
        store.serve()  # as the tracker's workers do: append to the journal, a thread stores batches
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        store.add_event(Event("click", attempt, 1, "https://shop.example.com/", user_agent=f"{tag}-{i}"))
    store.settle()  # timed until every event is in the database


def direct(workers: int, per_worker: int, sync: bool, journal: bool) -> tuple[float, int, int]:
    """Events/s of ``workers`` processes calling Store.add_event at once, no HTTP; (rate, logged, spooled).

    ``journal``: each process serves (journal + mover thread), timed until all its events are stored;
    else each event is its own transaction.
    """
    with scratch() as folder:
        s = seed(folder, sync=sync)
        attempt = int(sqlite3.connect(s.database).execute("SELECT id FROM attempts").fetchone()[0])
        start = time.time() + 1.0
        procs = [multiprocessing.Process(target=_writer, args=(s.database, sync, attempt, per_worker, f"w{w}", start, journal))
                 for w in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        elapsed = time.time() - start
        spool = s.database + ".spool"
        spooled = sum(1 for _ in open(spool)) if os.path.exists(spool) else 0
        return (workers * per_worker) / elapsed, count(s.database), spooled


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    print(f"gunicorn --workers {args.workers} (sync); wrk -t2 -c{args.connections} -d{args.seconds}s,"
          " one User-Agent per request\n")
    print("| CLICKTRAIL_SYNC | answered | events logged | spooled (db busy) | lost | events/s | p99 |")
    print("|---|---|---|---|---|---|---|")
    rates = {}
    for sync in ("yes", "no"):
        with scratch() as folder:
            s = seed(folder, sync=sync == "yes")
            with gunicorn(TRACKER, s.env, args.workers) as (base, _):
                r = wrk(base + s.click, args.seconds, args.connections, script=unique_agent_script(folder))
            assert r.errors == 0 and r.bad_status == 0, r.output
            logged, spooled, lost = check_log(s.database, s.database + ".spool", args.connections)
            assert logged + spooled >= r.requests and lost == 0, (logged, spooled, r.requests, lost)
            rates[sync] = (logged + spooled) / args.seconds
            print(f"| {sync} | {r.requests:,} | {logged:,} | {spooled:,} | {lost} | {rates[sync]:,.0f} |"
                  f" {r.p99_ms:.1f} ms |")
    with scratch() as folder:
        s = seed(folder)
        with gunicorn(BARE, s.env, args.workers) as (base, _):
            bare = wrk(base + s.click, args.seconds, args.connections)
    print(f"| (bare Flask, no logging: the HTTP ceiling here) | {bare.requests:,} | - | - | - | {bare.rps:,.0f} req/s |"
          f" {bare.p99_ms:.1f} ms |")
    print(f"\nThe store alone: {args.workers} processes calling Store.add_event at once, no HTTP\n")
    print("| CLICKTRAIL_SYNC | write path | events written | in the database | spooled | lost | events/s |")
    print("|---|---|---|---|---|---|---|")
    for sync in ("yes", "no"):
        for journal in (True, False):
            per = 1000 if sync == "yes" and not journal else 10_000
            rate, logged, spooled = direct(args.workers, per, sync == "yes", journal)
            lost = args.workers * per - logged - spooled
            assert lost == 0
            path = "journal, batches (serving)" if journal else "one transaction per event"
            print(f"| {sync} | {path} | {args.workers * per:,} | {logged:,} | {spooled} | {lost} | {rate:,.0f} |")
    print()
    print(f"HTTP ceiling (bare Flask, same gunicorn and wrk): {bare.rps:,.0f} req/s;"
          f" clicktrail with sync=no reaches {rates['no'] / bare.rps:.2f}x of it")
    for sync, rate in rates.items():
        print(f"CLICKTRAIL_SYNC={sync}: {rate:,.0f} events/s (target >= 2,000: {'met' if rate >= 2000 else 'NOT met'}),"
              " 0 lost")
    print(f"ratio sync=no / sync=yes: {rates['no'] / rates['yes']:.1f}x")


if __name__ == "__main__":
    main()
