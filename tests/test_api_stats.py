"""GET /api/stats: the dashboard's numbers over a period, per tag (untagged too) and per message, from raw events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_dashboard import URLS, card, click, login, send, view

from clicktrail import aggregate
from clicktrail.logstore import Store, attempt_key
from clicktrail.tracker import Clicktrail

DAY0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=6)


@pytest.fixture
def settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The shared settings, without an fsync for each of the many events written here."""
    return {**settings, "sync": False}


def traffic(store: Store, seed: int = 1) -> None:
    """Messages over five days (tagged and not), each opened and clicked at random after it was sent."""
    rnd = random.Random(seed)
    for n in range(40):
        sent = DAY0 + timedelta(hours=rnd.uniform(0, 5 * 24))
        (aid,) = send(store, 1, rnd.choice(["winter", "news", None]), at=sent, recipient=f"r{n}@example.com")
        for _ in range(rnd.randrange(0, 6)):
            at = sent + timedelta(hours=rnd.uniform(0, 30))
            r = rnd.random()
            if r < 0.3:
                view(store, aid, "pixel", at)
            elif r < 0.5:
                view(store, aid, "image", at)
            else:
                click(store, aid, rnd.randrange(1, len(URLS) + 1), at)


def raw_count(store: Store, start: str, end: str, tag: str | None = None) -> dict[str, Any]:
    """The numbers counted straight from the raw logs: a copy's unique open or click is in the period of its first."""
    inside = lambda ts: start <= ts < end  # noqa: E731
    attempts = {a["message"]: a for a in store.attempts() if tag is None or (a["tag"] or "") == tag}
    events = [e for kind in ("open", "click") for e in store.events(kind) if e["message"] in attempts]
    first: dict[tuple[str, str], str] = {}
    for e in sorted(events, key=lambda e: e["time"]):
        implied = ["open", "implied"] if e["type"] == "click" else ["implied"] if e["kind"] == "image" else []
        for what in (e["type"], e["kind"], f"url {e['url']}", *implied):  # a click is an open too
            first.setdefault((e["message"], what), e["time"])
    pixels = {m for m, what in first if what == "pixel"}
    unique_clicks = sum(1 for (m, what), ts in first.items() if what == "click" and inside(ts))
    links = {}
    for url in URLS:
        u = sum(1 for (m, what), ts in first.items() if what == f"url {url}" and inside(ts))
        t = sum(1 for e in events if e["type"] == "click" and e["url"] == url and inside(e["time"]))
        if u or t:
            links[url] = (u, t)
    messages = sum(1 for a in attempts.values() if inside(a["time"]))
    unique_opens = sum(1 for (m, what), ts in first.items() if what == "open" and inside(ts))
    return {
        "messages": messages,
        "unique_opens": unique_opens,
        "total_opens": sum(1 for e in events if e["kind"] == "pixel" and inside(e["time"]))
        + sum(1 for (m, what), ts in first.items() if what == "implied" and m not in pixels and inside(ts)),
        "unique_clicks": unique_clicks,
        "total_clicks": sum(1 for e in events if e["type"] == "click" and inside(e["time"])),
        "links": links,
    }


def numbers(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("messages", "unique_opens", "total_opens", "unique_clicks", "total_clicks")
    return {**{k: body[k] for k in keys},
            "links": {link["url"]: (link["unique_clicks"], link["total_clicks"]) for link in body["best_links"]}}


def test_stats_match_the_dashboard_and_a_direct_count_of_raw_events(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    traffic(parts.store)
    first, last = DAY0 + timedelta(days=1), DAY0 + timedelta(days=3)  # three whole UTC days, the dashboard's way
    start, end = first.isoformat(), (last + timedelta(days=1)).isoformat()
    api = client.get(f"/api/stats?start={start}&end={end}&links=100", headers=auth).get_json()
    assert api["period"] == {"start": first.isoformat(timespec="microseconds"),
                             "end": (last + timedelta(days=1)).isoformat(timespec="microseconds")}
    assert api["pending"] == 0
    raw = raw_count(parts.store, api["period"]["start"], api["period"]["end"])
    assert raw["messages"] and raw["unique_clicks"] and raw["total_opens"]  # the period holds something of each
    assert numbers(api["totals"]) == raw
    per_tag = {t["tag"]: t for t in api["tags"]}
    assert set(per_tag) == {"winter", "news", ""}
    for tag, entry in per_tag.items():
        assert numbers(entry) == raw_count(parts.store, api["period"]["start"], api["period"]["end"], tag), tag
        alone = client.get(f"/api/stats?start={start}&end={end}&links=100&tag={tag}", headers=auth).get_json()
        assert {**alone["totals"], "tag": tag} == entry and alone["tags"] == [entry]

    login(client)
    query = f"period=custom&from={first.date()}&to={last.date()}"  # the dashboard's timezone is UTC
    for tag, body in [(None, api["totals"]), *per_tag.items()]:
        page = client.get(f"/stats?{query}" if tag is None else f"/stats/tag?{query}&tag={tag}").text
        for name, key in [("messages", "messages"), ("unique-opens", "unique_opens"), ("total-opens", "total_opens"),
                          ("unique-clicks", "unique_clicks"), ("total-clicks", "total_clicks")]:
            assert card(page, name) == str(body[key]), (tag, name)
        for name, key in [("open-rate", "open_rate"), ("click-rate", "click_rate"),
                          ("click-to-open-rate", "click_to_open_rate")]:
            assert card(page, name) == f"{body[key] * 100:.1f}%", (tag, name)
        for link in body["best_links"]:
            assert (f'<td class="url">{link["url"].replace("&", "&amp;")}</td><td class="n">{link["unique_clicks"]}'
                    f'</td><td class="n">{link["total_clicks"]}</td>') in page


def test_a_period_is_widened_to_whole_utc_hours(client: FlaskClient, auth: dict[str, str],
                                                parts: Clicktrail) -> None:
    traffic(parts.store, seed=2)
    body = client.get("/api/stats?start=" + (DAY0 + timedelta(hours=30, minutes=20)).isoformat()
                      + "&end=" + (DAY0 + timedelta(hours=40, minutes=1)).isoformat(), headers=auth).get_json()
    hours = DAY0 + timedelta(hours=30), DAY0 + timedelta(hours=41)
    assert body["period"] == {"start": hours[0].isoformat(timespec="microseconds"),
                              "end": hours[1].isoformat(timespec="microseconds")}
    assert numbers(body["totals"]) | {"links": {}} == raw_count(
        parts.store, body["period"]["start"], body["period"]["end"]) | {"links": {}}
    everything = client.get("/api/stats?links=100", headers=auth).get_json()
    assert everything["period"] == {"start": None, "end": None}
    assert numbers(everything["totals"]) == raw_count(parts.store, "0", "9")
    assert numbers(everything["totals"]) == numbers(parts.store.stats(100))


def test_untagged_messages_have_their_own_entry_and_filter(client: FlaskClient, auth: dict[str, str],
                                                          parts: Clicktrail) -> None:
    untagged = send(parts.store, 2, None, at=DAY0)
    send(parts.store, 1, "winter", at=DAY0)
    click(parts.store, untagged[0], 1, at=DAY0 + timedelta(hours=1))
    body = client.get("/api/stats", headers=auth).get_json()
    assert {t["tag"]: (t["messages"], t["unique_clicks"]) for t in body["tags"]} == {"": (2, 1), "winter": (1, 0)}
    none = client.get("/api/stats?tag=", headers=auth).get_json()
    assert (none["totals"]["messages"], none["totals"]["unique_clicks"]) == (2, 1)
    assert {m["message"] for m in none["messages"]} == {attempt_key(a) for a in untagged}
    logs = client.get("/api/logs/attempts?tag=", headers=auth).get_data(as_text=True).splitlines()
    assert len(logs) == 2
    assert len(client.get("/api/logs/clicks?tag=", headers=auth).get_data(as_text=True).splitlines()) == 1


def test_messages_are_listed_newest_first_a_page_at_a_time_with_their_own_numbers(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    traffic(parts.store, seed=3)
    pages, after = [], ""
    while True:
        body = client.get(f"/api/stats?limit=7{after}", headers=auth).get_json()
        pages.append(body["messages"])
        if body["next"] is None:
            break
        assert body["next"] == body["messages"][-1]["message"]
        after = f"&after={body['next']}"
    listed = [m for page in pages for m in page]
    assert all(len(page) == 7 for page in pages[:-1])
    assert len(listed) == 40 == len({m["message"] for m in listed})
    assert [m["time"] for m in listed] == sorted((m["time"] for m in listed), reverse=True)
    for m in listed[::5]:
        own = parts.store.stats(attempt=int(m["message"], 16))
        assert (m["unique_opens"], m["total_opens"], m["unique_clicks"], m["total_clicks"]) == (
            own["unique_opens"], own["total_opens"], own["unique_clicks"], own["total_clicks"])
        one = client.get(f"/api/stats?message={m['message']}", headers=auth).get_json()
        assert one["messages"] == [m] and one["totals"] == own and one["period"] is None
    assert client.get("/api/stats?limit=0", headers=auth).get_json()["messages"] == []


def test_events_not_yet_folded_are_folded_before_answering(client: FlaskClient, auth: dict[str, str],
                                                           parts: Clicktrail) -> None:
    (aid,) = send(parts.store, 1, "winter")
    for _ in range(3):
        click(parts.store, aid, 1)
    assert aggregate.pending(parts.store) == 3
    body = client.get("/api/stats", headers=auth).get_json()
    assert (body["totals"]["total_clicks"], body["pending"]) == (3, 0) and body["updated_at"]


@pytest.mark.parametrize(("query", "field"), [
    ("start=2026-12-02&end=2026-12-01", "end"), ("start=2026-12-01T10:00Z&end=2026-12-01T10:00Z", "end"),
    ("start=soon", "start"), ("end=2026-13-01", "end"), ("limit=1001", "limit"), ("limit=-1", "limit"),
    ("after=0123456789abcdef", "after"), ("after=x", "after"), ("links=0", "links"), ("period=7d", "period"),
    ("message=0123456789abcdef&start=2026-01-01", "start"), ("message=0123456789abcdef&tag=x", "tag"),
    ("message=0123456789abcdef&after=0123456789abcdef", "after"), ("tag=a&tag=b", "tag"),
])
def test_bad_stats_parameters_are_a_400_naming_them(client: FlaskClient, auth: dict[str, str],
                                                    query: str, field: str) -> None:
    resp = client.get(f"/api/stats?{query}", headers=auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == field, resp.get_json()


def test_far_times_are_taken_as_all_time(client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    send(parts.store, 2, "winter", at=DAY0)
    body = client.get("/api/stats?start=0001-01-01T00:00:00Z&end=9999-12-31T23:59:59Z", headers=auth).get_json()
    assert body["totals"]["messages"] == 2
