"""Peak memory of a raw-log download: it must stay flat however many rows are exported.

Fills a database with 200,000 click events (over 2,000 attempts), then, in a
fresh process per run, downloads ``GET /api/logs/clicks`` through the app's
WSGI interface, reading the streamed body chunk by chunk as a server would,
and reports the process's peak RSS before and after, for 20,000 and 200,000 rows.

    .venv/bin/python bench/export_memory.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

from clicktrail import apikeys
from clicktrail.logstore import Store, new_id
from clicktrail.tracker import create_app

SETTINGS = {"secret_key": "bench", "click_domain": "https://clicks.example.com", "sync": False}


def fill(db: str, rows: int) -> None:
    store = Store(db, db + ".spool", sync=False)
    store.migrate()
    attempts = [new_id() for _ in range(2000)]
    store.write([("INSERT INTO attempts (id, content_id, ts, recipient, subject, message_id, tag, track_clicks,"
                  " track_opens) VALUES (?, 1, '2026-12-01T00:00:00.000000+00:00', ?, 'Winter sale', '<m@x>', 'winter',"
                  " 1, 1)", [(a, f"reader{i}@example.com") for i, a in enumerate(attempts)])])
    batch = 20_000
    for start in range(0, rows, batch):
        store.write([("INSERT INTO events (event_id, type, ts, attempt_id, link_idx, url, ip, user_agent)"
                      " VALUES (?, 'click', ?, ?, 3, 'https://shop.example.com/sale?id=7', '203.0.113.9',"
                      " 'Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0')",
                      [(f"{i:024x}", f"2026-12-01T{i // 3_600_000 % 24:02d}:{i // 60_000 % 60:02d}:"
                        f"{i // 1000 % 60:02d}.{i % 1000:03d}000+00:00", attempts[i % len(attempts)])
                       for i in range(start, min(rows, start + batch))])])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(db: str, rows: int, fmt: str) -> None:
    app = create_app({**SETTINGS, "database": db})
    key = apikeys.create(app.extensions["clicktrail"].store, "bench")[1]
    client = app.test_client()
    base = app.extensions["clicktrail"].config["click_domain"]  # the tracker answers on its own hosts
    auth = {"Authorization": f"Bearer {key}"}
    client.get("/api/stats", base_url=base, headers=auth)  # warm up imports and connection
    before = peak_mb()
    t = time.perf_counter()
    resp = client.get(f"/api/logs/clicks?format={fmt}&limit={rows}", base_url=base, headers=auth, buffered=False)
    size = lines = 0
    for chunk in resp.response:  # as a WSGI server would send it
        size += len(chunk)
        lines += chunk.count(b"\n")
    resp.close()
    took = time.perf_counter() - t
    print(json.dumps({"rows": rows, "format": fmt, "bytes": size, "lines": lines, "seconds": round(took, 2),
                      "peak_rss_before_mb": round(before, 1), "peak_rss_after_mb": round(peak_mb(), 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--child", nargs=3, metavar=("DB", "ROWS", "FORMAT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = f"{tmp}/bench.db"
        fill(db, args.rows)
        print(f"{'rows':>8} {'format':>6} {'MB out':>7} {'seconds':>7} {'peak RSS before':>15} {'peak RSS after':>14}")
        for fmt in ("jsonl", "csv", "json"):
            for rows in (args.rows // 10, args.rows):
                out = subprocess.run([sys.executable, __file__, "--child", db, str(rows), fmt], check=True,
                                     capture_output=True, text=True).stdout
                r = json.loads(out)
                print(f"{r['rows']:>8} {fmt:>6} {r['bytes'] / 1e6:>7.1f} {r['seconds']:>7} "
                      f"{r['peak_rss_before_mb']:>12.1f} MB {r['peak_rss_after_mb']:>11.1f} MB")


if __name__ == "__main__":
    main()
