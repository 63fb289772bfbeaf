"""Cost of each extra recipient of one message: scan once, stamp per recipient.

Builds a ~45 KB newsletter with 60 links (a corpus template plus a list of
articles), then times ``messages.track`` and a whole ``POST /api/messages``
with one recipient and with N, and reports (T(N) - T(1)) / (N - 1), in CPU time.

    .venv/bin/python bench/recipients.py [--recipients 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clicktrail import apikeys
from clicktrail.messages import track
from clicktrail.submission import compose
from clicktrail.tracker import create_app

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "html"
TEMPLATE = "cerberus-responsive.html"
TARGET_BYTES = 45_000
LINKS = 60


def newsletter() -> str:
    """A corpus template with articles added until it has 60 links and about 45 KB."""
    try:
        html = (CORPUS / TEMPLATE).read_text("utf-8")
    except FileNotFoundError:  # without the corpus, a plain shell of the same size does
        html = "<html><body>" + "<p>Winter news from the shop.</p>\n" * 600 + "</body></html>"
    have = html.count('href="http')
    items = [f'<li><a href="https://shop.example.com/articles/{i}?utm_source=news&amp;utm_campaign=winter">'
             f"Article {i}</a>: " for i in range(LINKS - have)]
    room = max(0, TARGET_BYTES - len(html.encode()) - sum(len(x) + 6 for x in items) - 10)
    teaser = ("Notes on boots, coats and the cold, with photos and sizes. " * 50)[: room // max(1, len(items))]
    block = "<ul>" + "".join(f"{x}{teaser}</li>\n" for x in items) + "</ul>"
    at = html.lower().rfind("</body>")
    return html[:at] + block + html[at:]


def best(fn: Callable[[], object], repeat: int) -> float:
    # CPU time of this process: the machine may be shared, and other processes' load
    # should not count.  The one disk wait per message (the commit) is not per recipient.
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.recipients
    html = newsletter()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"database": f"{tmp}/bench.db", "secret_key": "bench", "click_domain":
                          "https://clicks.example.com"})
        parts = app.extensions["clicktrail"]
        raw = compose(html, None, "Winter news", "news@shop.example.com", "shop.example.com")
        one, many = ["r0@example.com"], [f"r{i}@example.com" for i in range(n)]
        links = len(track(parts.store, parts.signer, parts.options, raw, one).prepared.links.links)
        print(f"newsletter: {len(html.encode())} bytes of HTML, {len(raw)} bytes as MIME, {links} tracked links "
              f"(incl. images); {n} recipients, best of {args.repeat}")
        t1 = best(lambda: track(parts.store, parts.signer, parts.options, raw, one), args.repeat)
        tn = best(lambda: track(parts.store, parts.signer, parts.options, raw, many), args.repeat)
        print(f"messages.track:      1 recipient {t1 * 1e3:7.2f} ms, {n} recipients {tn * 1e3:8.1f} ms, "
              f"per extra recipient {(tn - t1) / (n - 1) * 1e3:.3f} ms")
        client = app.test_client()
        base = app.extensions["clicktrail"].config["click_domain"]  # the tracker answers on its own hosts
        auth = {"Authorization": "Bearer " + apikeys.create(parts.store, "bench")[1]}

        def post(recipients: list[str]) -> None:
            body = json.dumps({"html": html, "subject": "Winter news", "recipients": recipients})
            resp = client.post("/api/messages", base_url=base, data=body, content_type="application/json", headers=auth)
            answer = resp.get_data()  # the whole answer, as the client reads it
            assert resp.status_code == 200 and answer.count(b'"message": ') == len(recipients), answer[:300]
        a1 = best(lambda: post(one), args.repeat)
        an = best(lambda: post(many), args.repeat)
        print(f"POST /api/messages:  1 recipient {a1 * 1e3:7.2f} ms, {n} recipients {an * 1e3:8.1f} ms, "
              f"per extra recipient {(an - a1) / (n - 1) * 1e3:.3f} ms (with the JSON answer)")


if __name__ == "__main__":
    main()
