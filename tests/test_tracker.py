"""tracker: clicks redirect exactly, opens are counted, forgeries go nowhere."""

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from clicktrail.errors import StoreUnavailable
from clicktrail.journal import Journal
from clicktrail.logstore import Event
from clicktrail.messages import track
from clicktrail.tracker import PIXEL_GIF, Clicktrail, create_app

HTML = (b'<html><body><a href="https://shop.example.com/a%2Fb+c?q=1&amp;r=%C3%A9#frag">Shop</a>'
        b'<img src="https://img.example.com/banner.png"></body></html>')


def send(parts: Clicktrail, raw: bytes = HTML, recipients: tuple[str, ...] = ("ann@example.com",)) -> list[str]:
    """Rewrite for the recipients; return each copy's tracked URLs (links, image, pixel) in order."""
    result = track(parts.store, parts.signer, parts.options, raw, list(recipients), "spring")
    return [re.findall(r'(?:href|src)="(https://clicks\.example\.com/[^"]+)"', c.data.decode()) for c in result.copies]


def path(url: str) -> str:
    return url.removeprefix("https://clicks.example.com").replace("&amp;", "&").split("#")[0]


def test_click_logs_then_redirects_to_exactly_the_original(client: FlaskClient, parts: Clicktrail) -> None:
    link, image, pixel = send(parts)[0]
    assert link.endswith("/a%2Fb+c?q=1&amp;r=%C3%A9#frag")
    resp = client.get(path(link), headers={"User-Agent": "Mail/1.0"})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://shop.example.com/a%2Fb+c?q=1&r=%C3%A9#frag"
    assert "no-store" in resp.headers["Cache-Control"]
    (event,) = parts.store.events("click")
    assert event["url"] == resp.headers["Location"] and event["recipient"] == "ann@example.com"
    assert event["tag"] == "spring" and event["user_agent"] == "Mail/1.0" and event["ip"] == "127.0.0.1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", event["time"])


def test_image_counts_as_open_and_redirects(client: FlaskClient, parts: Clicktrail) -> None:
    _, image, _ = send(parts)[0]
    resp = client.get(path(image))
    assert resp.status_code == 302 and resp.headers["Location"] == "https://img.example.com/banner.png"
    (event,) = parts.store.events("open")
    assert event["kind"] == "image" and event["url"] == "https://img.example.com/banner.png"


def test_pixel_is_a_gif_with_no_cache_and_counts(client: FlaskClient, parts: Clicktrail) -> None:
    *_, pixel = send(parts)[0]
    resp = client.get(path(pixel))
    assert resp.status_code == 200 and resp.data == PIXEL_GIF and resp.mimetype == "image/gif"
    assert "no-cache" in resp.headers["Cache-Control"]
    assert [e["kind"] for e in parts.store.events("open")] == ["pixel"]


def test_head_answers_the_same_but_is_not_counted(client: FlaskClient, parts: Clicktrail) -> None:
    link, image, pixel = send(parts)[0]
    assert client.head(path(link)).headers["Location"].startswith("https://shop.example.com/")
    assert client.head(path(pixel)).status_code == 200
    assert list(parts.store.events("click")) == [] and list(parts.store.events("open")) == []


def test_each_recipient_has_own_identifiers(client: FlaskClient, parts: Clicktrail) -> None:
    first, second = send(parts, recipients=("ann@example.com", "bob@example.com"))
    assert first[0] != second[0]
    client.get(path(second[0]))
    assert [e["recipient"] for e in parts.store.events("click")] == ["bob@example.com"]


@pytest.mark.parametrize("mangle", [
    lambda p: p.replace(p[1:25], p[1:24] + ("A" if p[24] != "A" else "B")),  # altered identifier
    lambda p: p[:24],  # truncated identifier
    lambda p: "/" + "A" * 24 + "/sale",  # made-up identifier
    lambda p: "/c?url=https%3A%2F%2Fevil.example.net%2F",  # classic open redirect
    lambda p: "/redirect/https://evil.example.net/",
])
def test_forged_or_unknown_links_get_404_and_no_location(client: FlaskClient, parts: Clicktrail, mangle: Any) -> None:
    link = send(parts)[0][0]
    resp = client.get(mangle(path(link)))
    assert resp.status_code == 404 and "Location" not in resp.headers
    assert b"Not found" in resp.data
    assert list(parts.store.events("click")) == []


def test_appended_url_parameter_cannot_redirect_elsewhere(client: FlaskClient, parts: Clicktrail) -> None:
    link = send(parts)[0][0]
    resp = client.get(path(link).split("?")[0] + "?url=https://evil.example.net/")
    assert resp.headers["Location"] == "https://shop.example.com/a%2Fb+c?q=1&r=%C3%A9#frag"


def test_valid_identifier_of_another_install_is_refused(settings: dict[str, Any], parts: Clicktrail) -> None:
    link = send(parts)[0][0]
    other = create_app({**settings, "secret_key": "another-key"}).test_client()
    assert other.get(path(link)).status_code == 404


def test_click_still_redirects_and_pixel_served_when_logging_fails(
    app: Flask, client: FlaskClient, parts: Clicktrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    link, _, pixel = send(parts)[0]

    def failing_write(*_: Any, **__: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")  # as a full or broken disk would

    monkeypatch.setattr(parts.store, "_write", failing_write)
    assert client.get(path(link)).status_code == 302
    assert client.get(path(pixel)).status_code == 200
    parts.store.settle()  # the database refuses: the events wait in the journal
    assert parts.store._journal is not None and parts.store._journal.waiting()
    monkeypatch.undo()
    assert len(list(parts.store.events("click"))) == 1 and len(list(parts.store.events("open"))) == 1
    assert not parts.store._journal.waiting()


def test_click_and_pixel_answer_when_journal_database_and_spool_all_fail(
    client: FlaskClient, parts: Clicktrail, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    link, _, pixel = send(parts)[0]

    def read_only(*_: Any, **__: Any) -> None:
        raise OSError(30, "Read-only file system")

    def locked(*_: Any, **__: Any) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Journal, "append", read_only)
    monkeypatch.setattr(parts.store, "_insert_event", locked)
    monkeypatch.setattr(parts.store, "spool", str(tmp_path / "gone" / "spool"))  # its folder is missing
    with pytest.raises(StoreUnavailable, match="neither the database nor the spool"):
        parts.store.add_event(Event("click", 1))
    assert client.get(path(link)).status_code == 302
    resp = client.get(path(pixel))
    assert resp.status_code == 200 and resp.data == PIXEL_GIF


def test_trusted_proxy_count_decides_the_client_ip(settings: dict[str, Any]) -> None:
    for proxies, expected in ((0, "127.0.0.1"), (1, "198.51.100.7")):
        app = create_app({**settings, "trusted_proxies": proxies})
        parts = app.extensions["clicktrail"]
        link = send(parts)[0][0]
        app.test_client().get(path(link), headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        assert [e["ip"] for e in parts.store.events("click")][-1] == expected


def test_resolving_clicks_are_answered_ahead_of_flask_and_the_rest_by_it(
    app: Flask, client: FlaskClient, parts: Clicktrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    link, _, pixel = send(parts)[0]
    calls: list[str] = []
    view = app.view_functions["tracking.follow"]
    monkeypatch.setitem(app.view_functions, "tracking.follow", lambda **kw: calls.append("flask") or view(**kw))
    started: list[int] = []
    monkeypatch.setitem(app.extensions, "clicktrail-per-worker", [lambda: started.append(1)])
    assert client.get(path(link)).headers["Location"] == "https://shop.example.com/a%2Fb+c?q=1&r=%C3%A9#frag"
    assert client.get(path(pixel)).data == PIXEL_GIF
    assert calls == [] and started == [1, 1]  # the fast path, which also starts per-worker work
    assert client.head(path(link)).status_code == 302
    assert client.get(path(link)[:-3] + "zzz").status_code == 302  # the shown path is never read
    assert client.get("/" + "A" * 24 + "/x").status_code == 404
    assert calls == ["flask", "flask"]
    assert len(list(parts.store.events("click"))) == 2


def test_an_original_path_that_starts_with_two_slashes_lands_exactly(client: FlaskClient, parts: Clicktrail) -> None:
    html = ('<a href="https://example.com//double/path?x=1">d</a><a href="https://example.com///x//y">t</a>'
            '<img src="https://cdn.example.com//img//a.png">')
    out = track(parts.store, parts.signer, parts.options, html.encode(), ["ann@example.com"]).copies[0].data.decode()
    links = re.findall(r'(?:href|src)="(https://clicks\.example\.com/[^"]+)"', out)
    wanted = ["https://example.com//double/path?x=1", "https://example.com///x//y", "https://cdn.example.com//img//a.png"]
    assert [path(link).split("/", 2)[2][:1] for link in links[:3]] == ["/", "/", "/"]  # the shown path keeps its slashes
    for link, original in zip(links, wanted, strict=False):
        for method in (client.get, client.head):
            resp = method(path(link))
            assert (resp.status_code, resp.headers.get("Location")) == (302, original)
    assert len(list(parts.store.events("click"))) == 2 and len(list(parts.store.events("open"))) == 1
