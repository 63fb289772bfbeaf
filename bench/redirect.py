"""Click redirect and open pixel under gunicorn: clicktrail (logging every hit) vs a bare Flask app.

Both run with the same gunicorn settings (sync workers, ``--workers``), one
after the other in this run, against one tracked link and one pixel (each
request logs one event).  Peak: wrk at saturation.  Latency: wrk paced to
half of the tracker's peak rate, p99 from ``--latency``.

    .venv/bin/python bench/redirect.py [--workers 4] [--seconds 10] [--connections 16] [--sync yes|no]

Targets: tracked req/s >= 0.8x the bare app's; p99 < 20 ms at half the peak load.
"""

from __future__ import annotations

import argparse

from harness import BARE, TRACKER, count, gunicorn, paced_script, scratch, seed, wrk


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--sync", choices=("yes", "no"), default="yes", help="CLICKTRAIL_SYNC for the tracker")
    args = p.parse_args()
    with scratch() as folder:
        s = seed(folder, sync=args.sync == "yes")
        peak: dict[tuple[str, str], float] = {}
        rows = []
        for route, path in (("click", s.click), ("pixel", s.pixel)):
            for name, app in (("bare Flask", BARE), ("clicktrail", TRACKER)):
                before = count(s.database, "click" if route == "click" else "open")
                with gunicorn(app, s.env, args.workers) as (base, _):
                    r = wrk(base + path, args.seconds, args.connections)
                    half = r.rps / 2
                    paced = wrk(base + path, args.seconds, args.connections,
                                script=paced_script(folder, half, args.connections))
                logged = count(s.database, "click" if route == "click" else "open") - before
                assert r.errors == 0 and r.bad_status == 0 and paced.errors == 0 and paced.bad_status == 0, r.output
                peak[route, name] = r.rps
                rows.append((route, name, r.rps, r.p99_ms, half, paced.rps, paced.p50_ms, paced.p99_ms,
                             logged, r.requests + paced.requests))
        print(f"gunicorn --workers {args.workers} (sync); wrk -t2 -c{args.connections} -d{args.seconds}s;"
              f" CLICKTRAIL_SYNC={args.sync}\n")
        print("| route | app | peak req/s | p99 at peak | paced to | got req/s | p50 | p99 | events logged / answered |")
        print("|---|---|---|---|---|---|---|---|---|")
        for route, name, rps, p99, half, got, p50h, p99h, logged, answered in rows:
            shown = f"{logged} / {answered}" if name == "clicktrail" else "-"
            print(f"| {route} | {name} | {rps:,.0f} | {p99:.1f} ms | {half:,.0f} | {got:,.0f} | {p50h:.2f} ms"
                  f" | {p99h:.2f} ms | {shown} |")
        print()
        for route in ("click", "pixel"):
            ratio = peak[route, "clicktrail"] / peak[route, "bare Flask"]
            p99h = next(r[7] for r in rows if r[0] == route and r[1] == "clicktrail")
            print(f"{route}: clicktrail / bare = {ratio:.2f}x (target >= 0.8x: {'met' if ratio >= 0.8 else 'NOT met'});"
                  f" p99 at half load {p99h:.2f} ms (target < 20 ms: {'met' if p99h < 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
