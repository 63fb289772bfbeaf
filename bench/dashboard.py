"""Benchmark the dashboard and GET /api/stats: time at 10k / 100k / 1M events, and the aggregation step's speed.

    .venv/bin/python bench/dashboard.py [--events 10000,100000,1000000] [--renders 20]

Synthetic data over the last 30 days: 5 tags, 40 messages of 8 links, one
attempt (copy) per 10 events, 60 % opens (a fifth of them images alone) and
40 % clicks.  Events are inserted in bulk, folded by the aggregation step,
then each page is rendered ``--renders`` times through the Flask app (logged
in) and the median and worst are printed.  Target: every page <= 300 ms at
1,000,000 events.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clicktrail import aggregate, apikeys
from clicktrail.logstore import Store, attempt_key, new_id
from clicktrail.tracker import create_app

TAGS = ["winter", "news", "launch", "digest", ""]
PAGES = {"overview 24h": "/stats?period=24h", "overview 7d": "/stats?period=7d",
         "overview 30d": "/stats?period=30d", "tag 30d": "/stats/tag?period=30d&tag=winter"}
API = {"api stats all time": "/api/stats", "api stats 7d": "/api/stats?start={week}",
       "api stats tag": "/api/stats?tag=winter&limit=1000"}


def fill(store: Store, events: int, rnd: random.Random) -> tuple[int, int]:
    """Insert messages, attempts and events in bulk; return two attempt ids."""
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    when = lambda: (start + timedelta(seconds=rnd.uniform(0, span))).isoformat(timespec="microseconds")  # noqa: E731
    contents = []
    for m in range(40):
        cid = new_id()
        urls = [f"https://shop.example.com/m{m}/item{i}?utm_source=news&id={i}" for i in range(8)]
        contents.append((cid, TAGS[m % len(TAGS)] or None, urls))
        store.write([("INSERT INTO links (content_id, idx, kind, url) VALUES (?, ?, ?, ?)",
                      [(cid, i + 1, "click", u) for i, u in enumerate(urls)])])
    attempts = []
    for _ in range(max(1, events // 10)):
        cid, tag, urls = rnd.choice(contents)
        attempts.append((new_id(), cid, when(), f"reader{len(attempts)}@example.com", "Benchmark", tag, urls))
    store.write([("INSERT INTO attempts (id, content_id, ts, recipient, subject, message_id, tag, track_clicks,"
                  " track_opens) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 1)",
                  [(a[0], a[1], a[2], a[3], a[4], f"<{a[0]}@bench>", a[5]) for a in attempts])])
    rows = []
    for n in range(events):
        aid, _cid, _sent, _r, _s, _tag, urls = rnd.choice(attempts)
        r = rnd.random()
        if r < 0.48:
            row = ("open", "pixel", aid, 0, None)
        elif r < 0.6:
            row = ("open", "image", aid, 9, None)
        else:
            idx = min(int(rnd.expovariate(0.6)), 7)  # a few links take most clicks
            row = ("click", None, aid, idx + 1, urls[idx])
        rows.append((f"bench{n:09d}", row[0], row[1], when(), row[2], row[3], row[4], "192.0.2.1",
                     "Mozilla/5.0 (bench)"))
        if len(rows) == 50_000:
            _insert(store, rows)
            rows = []
    _insert(store, rows)
    return int(attempts[0][0]), int(attempts[-1][0])


def _insert(store: Store, rows: list[tuple[object, ...]]) -> None:
    store.write([("INSERT INTO events (event_id, type, kind, ts, attempt_id, link_idx, url, ip, user_agent)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)])


def run(events: int, renders: int, folder: Path) -> dict[str, float]:
    app = create_app({"database": str(folder / f"bench-{events}.db"), "secret_key": "bench", "sync": False,
                      "stats_password": "bench-pass", "aggregate_interval": 0})
    store = app.extensions["clicktrail"].store
    rnd = random.Random(events)
    t = time.perf_counter()
    aid, busy = fill(store, events, rnd)
    filled = time.perf_counter() - t
    t = time.perf_counter()
    folded = aggregate.fold(store)
    fold_s = time.perf_counter() - t
    assert folded == events
    # One more batch of fresh events: what a timer tick costs in steady state.
    _insert(store, [(f"late{n}", "click", None, datetime.now(UTC).isoformat(timespec="microseconds"), busy, 1,
                     "https://shop.example.com/late", "192.0.2.1", "bench") for n in range(1000)])
    t = time.perf_counter()
    aggregate.fold(store)
    tick_s = time.perf_counter() - t
    client = app.test_client()
    base = app.extensions["clicktrail"].config["click_domain"]  # the tracker answers on its own hosts only
    page = client.get("/login", base_url=base).text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/login", data={"csrf": token, "password": "bench-pass"}, base_url=base).status_code == 302
    result = {"fill s": filled, "fold s": fold_s, "fold events/s": events / fold_s, "tick 1k s": tick_s}
    pages = {**PAGES, "message": f"/stats/message/{attempt_key(aid)}",
             "message (1,000 clicks)": f"/stats/message/{attempt_key(busy)}"}
    week = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pages |= {name: path.format(week=week) for name, path in API.items()}
    auth = {"Authorization": "Bearer " + apikeys.create(store, "bench")[1]}
    for name, path in pages.items():
        times = []
        for _ in range(renders + 2):
            t = time.perf_counter()
            resp = client.get(path, headers=auth if path.startswith("/api") else {}, base_url=base)
            times.append(time.perf_counter() - t)
            assert resp.status_code == 200, (path, resp.status_code)
        times = times[2:]  # warm-up
        result[f"{name} median ms"] = statistics.median(times) * 1000
        result[f"{name} max ms"] = max(times) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="10000,100000,1000000", help="Comma-separated event counts.")
    parser.add_argument("--renders", type=int, default=20, help="Renders of each page per size.")
    parser.add_argument("--dir", help="Folder for the databases (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in (int(x) for x in args.events.split(",")):
            r = run(n, args.renders, Path(tmp))
            print(f"{n:>9,} events: fill {r['fill s']:.1f} s; fold {r['fold s']:.1f} s"
                  f" ({r['fold events/s']:,.0f} events/s); a 1,000-event tick {r['tick 1k s'] * 1000:.0f} ms")
            for name in [*PAGES, "message", "message (1,000 clicks)", *API]:
                print(f"    {name:<22} median {r[f'{name} median ms']:6.1f} ms   max {r[f'{name} max ms']:6.1f} ms")


if __name__ == "__main__":
    main()
