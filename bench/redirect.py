"""Click redirect and open pixel under gunicorn: clicktrail (logging every hit) vs a bare Flask app.

Both run at once with the same gunicorn settings (sync workers, ``--workers``)
and are measured in alternating rounds in this run (the machine's load drifts;
alternating keeps the ratio fair), against one tracked link and one pixel
(each request logs one event).  Peak: wrk at saturation, median of the rounds.
Latency: wrk paced to half of each app's peak, p99 from ``--latency``.

    .venv/bin/python bench/redirect.py [--workers 4] [--seconds 8] [--rounds 3] [--connections 16] [--sync yes|no]

Targets: tracked req/s >= 0.8x the bare app's; p99 < 20 ms at half the peak load.
"""

from __future__ import annotations

import argparse
import statistics

from harness import BARE, TRACKER, count, gunicorn, paced_script, scratch, seed, wrk

APPS = ("bare Flask", "clicktrail")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--sync", choices=("yes", "no"), default="no", help="CLICKTRAIL_SYNC for the tracker")
    args = p.parse_args()
    with scratch() as folder:
        s = seed(folder, sync=args.sync == "yes")
        with gunicorn(BARE, s.env, args.workers) as (bare, _), gunicorn(TRACKER, s.env, args.workers) as (ours, _):
            bases = dict(zip(APPS, (bare, ours), strict=True))
            print(f"gunicorn --workers {args.workers} (sync) for both; wrk -t2 -c{args.connections} -d{args.seconds}s"
                  f" --latency, {args.rounds} alternating rounds; CLICKTRAIL_SYNC={args.sync}\n")
            print("| route | app | peak req/s (median; rounds) | p99 at peak | paced to | got req/s | p50 | p99 |"
                  " events logged / answered |")
            print("|---|---|---|---|---|---|---|---|---|")
            summary = []
            for route, path, type_ in (("click", s.click, "click"), ("pixel", s.pixel, "open")):
                peaks: dict[str, list[float]] = {a: [] for a in APPS}
                p99s: dict[str, list[float]] = {a: [] for a in APPS}
                answered = 0
                before = count(s.database, type_)
                for _ in range(args.rounds):
                    for app in APPS:
                        r = wrk(bases[app] + path, args.seconds, args.connections)
                        assert r.errors == 0 and r.bad_status == 0, r.output
                        peaks[app].append(r.rps)
                        p99s[app].append(r.p99_ms)
                        answered += r.requests if app == "clicktrail" else 0
                paced = {}
                for app in APPS:
                    half = statistics.median(peaks[app]) / 2
                    r = wrk(bases[app] + path, args.seconds, args.connections,
                            script=paced_script(folder, half, args.connections))
                    assert r.errors == 0 and r.bad_status == 0, r.output
                    paced[app] = (half, r)
                    answered += r.requests if app == "clicktrail" else 0
                logged = count(s.database, type_) - before
                for app in APPS:
                    half, r = paced[app]
                    shown = f"{logged:,} / {answered:,}" if app == "clicktrail" else "-"
                    rounds = ", ".join(f"{x:,.0f}" for x in peaks[app])
                    print(f"| {route} | {app} | {statistics.median(peaks[app]):,.0f} ({rounds}) |"
                          f" {statistics.median(p99s[app]):.1f} ms | {half:,.0f} | {r.rps:,.0f} | {r.p50_ms:.2f} ms |"
                          f" {r.p99_ms:.2f} ms | {shown} |")
                ratio = statistics.median(peaks["clicktrail"]) / statistics.median(peaks["bare Flask"])
                per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(peaks["clicktrail"], peaks["bare Flask"],
                                                                     strict=True))
                p99h = paced["clicktrail"][1].p99_ms
                summary.append(f"{route}: clicktrail / bare = {ratio:.2f}x (per round {per_round}; target >= 0.8x:"
                               f" {'met' if ratio >= 0.8 else 'NOT met'}); p99 at half load {p99h:.2f} ms"
                               f" (target < 20 ms: {'met' if p99h < 20 else 'NOT met'})")
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
