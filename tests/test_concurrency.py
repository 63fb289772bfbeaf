"""Many clients at once against 4 gunicorn workers: every click is logged exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from reliability import hammer, logged, seed
from servers import gunicorn

from clicktrail.tracker import Clicktrail

pytestmark = pytest.mark.slow

CLICKS = 1200
LINKS = 6


def test_concurrent_clicks_are_logged_exactly_once(parts: Clicktrail, env: dict[str, str], tmp_path: Path) -> None:
    urls = [f"https://shop.example.com/item/{i}?ref=news&x=%20y#top" for i in range(1, LINKS + 1)]
    copies = [seed(parts.store, parts.signer, urls, recipient=f"r{n}@example.com") for n in range(4)]
    jobs = [(copies[n % 4].path(1 + n % LINKS), f"client-{n}") for n in range(CLICKS)]
    pixels = [(copies[n % 4].path(0), f"pixel-{n}") for n in range(CLICKS // 4)]
    with gunicorn(env, workers=4) as (base, _):
        results = hammer(base, jobs + pixels, threads=24)

    by_marker = {r.marker: r for r in results}
    assert len(by_marker) == CLICKS + CLICKS // 4
    assert all(by_marker[m].status == 302 for _, m in jobs)
    assert all(by_marker[m].status == 200 for _, m in pixels)
    for path, marker in jobs:  # each redirect went to exactly its own link's URL
        idx = 1 + int(marker.split("-")[1]) % LINKS
        assert by_marker[marker].location == urls[idx - 1], path

    clicks = logged(env["CLICKTRAIL_DATABASE"], "click")
    assert len(clicks) == CLICKS
    assert len({event_id for event_id, *_ in clicks}) == CLICKS  # no duplicated event
    per_agent = Counter(agent for _, agent, _, _ in clicks)
    assert set(per_agent) == {m for _, m in jobs} and set(per_agent.values()) == {1}
    assert all(url == urls[idx - 1] for _, _, idx, url in clicks)
    opens = logged(env["CLICKTRAIL_DATABASE"], "open")
    assert Counter(agent for _, agent, _, _ in opens) == Counter({m: 1 for _, m in pixels})
    assert parts.store.stats()["total_clicks"] == CLICKS
