"""Memory: peak RSS of a tracker worker under load, and of exporting 200,000 events.

Side by side in this run: a worker of the bare Flask app under the same load,
and the export of a tenth as many events (streamed in batches, the peak should
not grow with the log).

    .venv/bin/python bench/memory.py [--events 200000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from harness import BARE, TRACKER, gunicorn, peak_rss_kb, scratch, seed, workers_of, wrk

from clicktrail.logstore import Event, Store


def worker_peak(app: str, env: dict[str, str], paths: list[str], seconds: int) -> int:
    """The largest peak RSS (KB) among 4 workers after wrk on each path."""
    with gunicorn(app, env, 4) as (base, server):
        for path in paths:
            r = wrk(base + path, seconds, 16)
            assert r.errors == 0 and r.bad_status == 0, r.output
        return max(peak_rss_kb(pid) for pid in workers_of(server.pid))


def fill(database: str, n: int) -> None:
    """``n`` click events with realistic field sizes, written in large transactions."""
    store = Store(database, database + ".spool")
    attempt = int(sqlite3.connect(database).execute("SELECT id FROM attempts").fetchone()[0])
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    batch = 20_000
    for start in range(0, n, batch):
        rows = [store._event_row(Event("click", attempt, 1, f"https://shop.example.com/p/{i % 60}?utm_source=news",
                                       ip=f"203.0.113.{i % 250}", user_agent=ua))
                for i in range(start, min(n, start + batch))]
        store.write([(store._INSERT_EVENT, rows)])
    store.close()


def export_peak(env: dict[str, str]) -> tuple[int, int]:
    """Peak RSS (KB) of ``clicktrail logs clicks`` to /dev/null, and the lines it wrote."""
    exe = str(Path(sys.executable).with_name("clicktrail"))
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.stdout.count(b'\\n'))")
    # A fresh Python reports its child's peak alone; the pipe is read here, not held by the exporter.
    out = subprocess.run([sys.executable, "-c", code, exe, "logs", "clicks"], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--seconds", type=int, default=10)
    args = p.parse_args()
    with scratch() as folder:
        s = seed(folder, sync=False)
        bare = worker_peak(BARE, s.env, [s.click, s.pixel], args.seconds)
        ours = worker_peak(TRACKER, s.env, [s.click, s.pixel], args.seconds)
    print(f"Worker under load (gunicorn --workers 4, wrk -c16 {args.seconds}s on the click, then the pixel):\n")
    print("| app | peak RSS of the largest worker |")
    print("|---|---|")
    print(f"| bare Flask | {bare / 1024:.1f} MB |")
    print(f"| clicktrail | {ours / 1024:.1f} MB ({ours / bare:.2f}x) |")
    rows = []
    for n in (args.events // 10, args.events):
        with scratch() as folder:
            s = seed(folder, sync=False)
            fill(s.database, n)
            rss, lines = export_peak(s.env)
            assert lines == n, (lines, n)
            rows.append((n, rss, os.path.getsize(s.database)))
    print("\nExport (`clicktrail logs clicks > pipe`):\n")
    print("| events | database | peak RSS of the export |")
    print("|---|---|---|")
    for n, rss, size in rows:
        print(f"| {n:,} | {size / 1e6:.0f} MB | {rss / 1024:.1f} MB |")
    print(f"\n{args.events:,} events exported with a {rows[1][1] / 1024:.1f} MB peak;"
          f" {rows[1][1] / rows[0][1]:.2f}x the peak for {rows[0][0]:,} (streamed: it does not grow with the log)")


if __name__ == "__main__":
    main()
