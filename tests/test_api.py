"""The REST API: submitting messages, raw logs, stats, errors and the OpenAPI contract."""

from __future__ import annotations

import csv
import email
import io
import json
import re
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import BASE
from flask import Flask
from flask.testing import FlaskClient
from servers import gunicorn, mail_sink

from clicktrail import apikeys, config, openapi
from clicktrail.logstore import Event
from clicktrail.tracker import Clicktrail, build, create_app

TOKEN = re.compile(re.escape(BASE) + r"/([A-Za-z0-9_-]{24})/")
HTML = ('<html><body><p><a href="https://shop.example.com/sale?id=7">Sale</a> '
        '<a href="https://shop.example.com/guide">Guide</a></p>'
        '<img src="https://shop.example.com/banner.png"></body></html>')
NEWSLETTER = resources.files("clicktrail").joinpath("demo/newsletter.eml").read_bytes()


def submit(client: FlaskClient, auth: dict[str, str], **body: Any) -> Any:
    resp = client.post("/api/messages", json=body, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def text_of(mime: str) -> str:
    """The decoded text of every text part of a message."""
    msg = email.message_from_string(mime)
    parts = [p.get_payload(decode=True) for p in msg.walk() if p.get_content_maintype() == "text"]
    return "\n".join(p.decode(errors="replace") for p in parts if isinstance(p, bytes))


def tokens(mime: str) -> list[str]:
    return TOKEN.findall(text_of(mime))


def lines(resp: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]


def click_all(client: FlaskClient, result: dict[str, Any], ua: str = "pytest") -> None:
    """Follow every tracked link of every copy, as readers would."""
    for copy in result["messages"]:
        for token in tokens(copy["mime"]):
            client.get(f"/{token}/x", headers={"User-Agent": ua})


# -- submitting messages ------------------------------------------------------------
def test_html_is_rewritten_once_per_recipient_with_one_attempt_each(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    result = submit(client, auth, html=HTML, subject="Sale", **{"from": "Shop <news@shop.example.com>"},
                    recipients=["ann@example.com", "bob@example.com", "cy@example.com"], tag="winter")
    copies = result["messages"]
    assert [c["recipient"] for c in copies] == ["ann@example.com", "bob@example.com", "cy@example.com"]
    assert len({c["message"] for c in copies}) == 3
    assert result["links"] == 3 and result["track_clicks"] and result["track_opens"]
    seen: set[str] = set()
    for c in copies:
        assert c["encoding"] == "utf-8"
        assert "Subject: Sale" in c["mime"] and "From: Shop <news@shop.example.com>" in c["mime"]
        found = tokens(c["mime"])
        assert len(found) == 4  # two links, the image, the pixel
        assert not seen & set(found)  # identifiers are per copy
        seen |= set(found)
    attempts = list(parts.store.attempts())
    assert sorted(a["message"] for a in attempts) == sorted(c["message"] for c in copies)
    assert {a["recipient"] for a in attempts} == {"ann@example.com", "bob@example.com", "cy@example.com"}
    assert {a["tag"] for a in attempts} == {"winter"}


def test_a_tracked_link_from_the_api_redirects_and_logs_its_recipient(
        client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, html=HTML, recipients="bob@example.com")
    token = tokens(result["messages"][0]["mime"])[0]
    resp = client.get(f"/{token}/sale")
    assert resp.status_code == 302 and resp.headers["Location"] == "https://shop.example.com/sale?id=7"
    row = lines(client.get("/api/logs/clicks", headers=auth))[0]
    assert row["recipient"] == "bob@example.com" and row["message"] == result["messages"][0]["message"]


def test_text_and_html_become_alternatives(client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, text="Sale: https://shop.example.com/sale", html=HTML, recipients=["a@example.com"])
    mime = result["messages"][0]["mime"]
    assert "multipart/alternative" in mime and "text/plain" in mime and "text/html" in mime
    assert "https://shop.example.com/sale\n" not in text_of(mime)  # the plain-text link is tracked too


def test_a_whole_mime_message_keeps_its_headers(client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, mime=NEWSLETTER.decode("utf-8"), recipients=["reader@example.com"])
    out = result["messages"][0]["mime"].encode("utf-8")
    head = NEWSLETTER.split(b"\n\n", 1)[0]
    assert out.startswith(head)
    assert len(tokens(result["messages"][0]["mime"])) > 5


def test_without_recipients_the_copy_goes_to_the_to_header(client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, mime=NEWSLETTER.decode("utf-8"))
    assert [c["recipient"] for c in result["messages"]] == ["reader@example.com"]


def test_a_message_that_is_not_utf8_comes_back_in_base64(client: FlaskClient, auth: dict[str, str]) -> None:
    raw = (b"From: a@example.com\nTo: b@example.com\nSubject: caf\xe9\nMIME-Version: 1.0\n"
           b"Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
           b'<p>Caf\xe9 <a href="https://example.com/menu">menu</a></p>\n')
    resp = client.post("/api/messages", data={"mime": (io.BytesIO(raw), "m.eml"), "recipients": "b@example.com"},
                       headers=auth, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_json()
    copy = resp.get_json()["messages"][0]
    assert copy["encoding"] == "base64"
    import base64

    data = base64.b64decode(copy["mime"])
    assert b"Caf\xe9" in data and BASE.encode() in data


@pytest.mark.parametrize("how", ["urlencoded", "multipart"])
def test_form_data_is_accepted(client: FlaskClient, auth: dict[str, str], parts: Clicktrail, how: str) -> None:
    fields = {"html": HTML, "recipients": ["ann@example.com", "bob@example.com"], "tag": "form",
              "trackopens": "no"}
    resp = client.post("/api/messages", data=fields, headers=auth,
                       content_type="multipart/form-data" if how == "multipart" else None)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert len(body["messages"]) == 2 and body["track_opens"] is False
    assert "o.gif" not in text_of(body["messages"][0]["mime"])
    assert {a["tag"] for a in parts.store.attempts()} == {"form"}


def test_comma_separated_recipients_in_one_field(client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, html=HTML, recipients="Ann <ann@example.com>, bob@example.com")
    assert [c["recipient"] for c in result["messages"]] == ["ann@example.com", "bob@example.com"]


@pytest.mark.parametrize(("sent", "clicks", "opens"), [
    ({"trackclicks": True}, True, False), ({"trackopens": True}, False, True),
    ({"trackclicks": "yes", "trackopens": "1"}, True, True), ({"trackclicks": "true"}, True, False),
])
def test_switches_in_the_request_override_configuration(settings: dict[str, Any], sent: dict[str, Any],
                                                        clicks: bool, opens: bool) -> None:
    app = create_app({**settings, "track_clicks": False, "track_opens": False})
    client = app.test_client()
    auth = {"Authorization": "Bearer " + apikeys.create(app.extensions["clicktrail"].store, "t")[1]}
    form = any(isinstance(v, str) for v in sent.values())
    body = {"html": HTML, "recipients": "ann@example.com", **sent}
    resp = client.post("/api/messages", data=body, headers=auth) if form else client.post(
        "/api/messages", json=body, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    result = resp.get_json()
    assert (result["track_clicks"], result["track_opens"]) == (clicks, opens)
    mime = text_of(result["messages"][0]["mime"])
    assert ("o.gif" in mime) == opens
    assert ("https://shop.example.com/sale?id=7" not in mime) == clicks


@pytest.mark.parametrize(("sent", "on"), [(False, "no"), ("0", "no"), ("false", "no"), ("no", "no")])
def test_switches_turn_tracking_off(client: FlaskClient, auth: dict[str, str], sent: Any, on: str) -> None:
    body = {"html": HTML, "recipients": "ann@example.com", "trackclicks": sent}
    resp = client.post("/api/messages", json=body, headers=auth) if isinstance(sent, bool) else client.post(
        "/api/messages", data=body, headers=auth)
    result = resp.get_json()
    assert result["track_clicks"] is False
    assert "https://shop.example.com/sale?id=7" in text_of(result["messages"][0]["mime"])


def test_a_switch_contradicting_the_message_header_is_refused(client: FlaskClient, auth: dict[str, str]) -> None:
    raw = NEWSLETTER.replace(b"MIME-Version: 1.0\n", b"MIME-Version: 1.0\nX-Clicktrail-Trackclicks: no\n")
    resp = client.post("/api/messages", json={"mime": raw.decode(), "trackclicks": True}, headers=auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == "trackclicks"


BAD_MIME = ("From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n"
            "--b1\nContent-Type: text/html\n\n<a href=\"https://example.com/\">x</a>\n")


@pytest.mark.parametrize(("body", "field"), [
    ({"html": HTML, "color": "red"}, "color"),
    ({"html": 5}, "html"),
    ({"html": HTML, "recipients": 5}, "recipients"),
    ({"html": HTML, "recipients": ["ann@example.com", 7]}, "recipients"),
    ({"html": HTML, "trackclicks": "yes"}, "trackclicks"),
    ({"recipients": ["ann@example.com"]}, "html"),
    ({}, "html"),
    ({"html": ""}, "html"),
    ({"html": "", "text": ""}, "html"),
    ({"text": ""}, "text"),
    ({"mime": ""}, "mime"),
    ({"html": HTML, "recipients": "not-an-address"}, "recipients"),
    ({"html": HTML, "recipients": ["ann@example.com", "bob@@example.com"]}, "recipients"),
    ({"html": HTML, "recipients": "a b@example.com"}, "recipients"),
    ({"html": HTML, "from": "nobody"}, "from"),
    ({"mime": BAD_MIME}, "mime"),
    ({"mime": "<html><body>bare html</body></html>"}, "mime"),
    ({"mime": NEWSLETTER.decode(), "html": HTML}, "html"),
    ({"mime": "From: a@example.com\nX-Clicktrail-Trackopens: perhaps\n\nhi\n"}, "mime"),
    ({"html": HTML, "subject": "Hi\r\nBcc: all@example.com"}, "subject"),
    ({"html": HTML, "tag": "x" * 201}, "tag"),
    ({"html": "\udc80"}, "html"),
])
def test_bad_input_is_a_400_naming_the_field(client: FlaskClient, auth: dict[str, str], parts: Clicktrail,
                                             body: dict[str, Any], field: str) -> None:
    resp = client.post("/api/messages", data=json.dumps(body), content_type="application/json", headers=auth)
    assert resp.status_code == 400
    error = resp.get_json()
    assert error["field"] == field and error["error"]
    assert list(parts.store.attempts()) == []  # nothing was recorded


@pytest.mark.parametrize(("data", "field"), [
    ({"html": HTML, "trackopens": "maybe"}, "trackopens"),
    ({"html": HTML, "bcc": "x@example.com"}, "bcc"),
    ({"html": HTML, "tag": ["a", "b"]}, "tag"),
])
def test_bad_form_input_is_a_400_naming_the_field(client: FlaskClient, auth: dict[str, str],
                                                  data: dict[str, Any], field: str) -> None:
    resp = client.post("/api/messages", data=data, headers=auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == field


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_a_400(client: FlaskClient, auth: dict[str, str], raw: bytes) -> None:
    resp = client.post("/api/messages", data=raw, content_type="application/json", headers=auth)
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_other_content_types_are_415(client: FlaskClient, auth: dict[str, str]) -> None:
    resp = client.post("/api/messages", data=HTML, content_type="text/html", headers=auth)
    assert resp.status_code == 415 and "error" in resp.get_json()


@pytest.mark.parametrize("how", ["json", "urlencoded", "multipart", "chunked"])
def test_a_body_over_the_limit_is_413(settings: dict[str, Any], how: str) -> None:
    app = create_app({**settings, "max_message_bytes": 2000})
    client = app.test_client()
    auth = {"Authorization": "Bearer " + apikeys.create(app.extensions["clicktrail"].store, "t")[1]}
    big = "<p>" + "x" * 3000 + "</p>"
    if how == "json":
        resp = client.post("/api/messages", json={"html": big}, headers=auth)
    elif how == "chunked":  # no length: the server ends the stream (gunicorn does for chunked bodies)
        chunked = {**auth, "Transfer-Encoding": "chunked"}
        resp = client.post("/api/messages", input_stream=io.BytesIO(json.dumps({"html": big}).encode()),
                           content_type="application/json", headers=chunked,
                           environ_overrides={"wsgi.input_terminated": True})
        small = client.post("/api/messages", input_stream=io.BytesIO(json.dumps({"html": HTML}).encode()),
                            content_type="application/json", headers=chunked,
                            environ_overrides={"wsgi.input_terminated": True})
        assert small.status_code == 200, small.get_json()
    else:
        resp = client.post("/api/messages", data={"html": big}, headers=auth,
                           content_type="multipart/form-data" if how == "multipart" else None)
    assert resp.status_code == 413 and "error" in resp.get_json()
    assert client.post("/api/messages", json={"html": HTML}, headers=auth).status_code == 200


def test_too_many_copies_of_a_big_message_is_413_naming_recipients_before_anything_is_recorded(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    # Within every documented limit (620 KB, 1,000 recipients), but 1,000 copies with 10,000 links each
    # took the worker past gunicorn's 30 s timeout.
    html = "<html><body>" + "".join(f'<a href="https://shop.example.com/p/{i}?x=1">item {i}</a>\n'
                                    for i in range(10_000)) + "</body></html>"
    everyone = [f"u{i}@example.com" for i in range(1000)]
    resp = client.post("/api/messages", json={"html": html, "recipients": everyone}, headers=auth)
    assert resp.status_code == 413
    error = resp.get_json()
    assert error["field"] == "recipients" and "send fewer recipients per request" in error["error"]
    most = int(re.findall(r"at most (\d+) for this message", error["error"])[0])
    assert 1 <= most < 1000
    assert list(parts.store.attempts()) == []  # refused before anything was recorded
    resp = client.post("/api/messages", json={"html": html, "recipients": everyone[:most + 1]}, headers=auth)
    assert resp.status_code == 413 and f"at most {most} " in resp.get_json()["error"]
    assert list(parts.store.attempts()) == []
    small = submit(client, auth, html=HTML, recipients=everyone)  # the documented 1,000 of a small message
    assert len(small["messages"]) == 1000
    spec = client.get("/api/openapi.json", headers=auth).get_json()
    assert "recipients" in spec["paths"]["/api/messages"]["post"]["responses"]["413"]["description"]


@pytest.mark.parametrize("field", ["html", "text"])
def test_content_over_the_part_limit_is_refused_naming_the_field_sent(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail, field: str) -> None:
    big = "<p>" + "x" * (5 * 1024 * 1024 + 10) + "</p>"  # within the 10 MB body limit, over the 5 MiB part limit
    resp = client.post("/api/messages", json={field: big}, headers=auth)
    assert resp.status_code == 400
    error = resp.get_json()
    assert error["field"] == field and error["error"].startswith(f"{field} cannot be read exactly:")
    both = {"html": HTML, "text": "hi", field: big}
    error = client.post("/api/messages", json=both, headers=auth).get_json()
    assert error["field"] == field
    assert list(parts.store.attempts()) == []


# -- logs -------------------------------------------------------------------------
@pytest.fixture
def traffic(client: FlaskClient, auth: dict[str, str]) -> dict[str, Any]:
    """Two tagged sends, every link of every copy followed once."""
    a = submit(client, auth, html=HTML, recipients=["ann@example.com", "bob@example.com"], tag="winter")
    b = submit(client, auth, html=HTML, recipients=["cy@example.com"], tag="spring")
    click_all(client, a)
    click_all(client, b)
    return {"winter": a, "spring": b}


@pytest.mark.parametrize("kind", ["attempts", "clicks", "opens"])
def test_every_row_has_a_stable_id_and_utc_time_with_offset(
        client: FlaskClient, auth: dict[str, str], traffic: dict[str, Any], kind: str) -> None:
    first = lines(client.get(f"/api/logs/{kind}", headers=auth))
    again = lines(client.get(f"/api/logs/{kind}", headers=auth))
    assert first and first == again
    assert len({r["id"] for r in first}) == len(first)
    for row in first:
        assert row["time"].endswith("+00:00") and "seq" not in row


def test_logs_hold_what_the_core_records(client: FlaskClient, auth: dict[str, str], traffic: dict[str, Any]) -> None:
    clicks = lines(client.get("/api/logs/clicks", headers=auth))
    assert len(clicks) == 6  # three copies, two links each
    assert {c["url"] for c in clicks} == {"https://shop.example.com/sale?id=7", "https://shop.example.com/guide"}
    assert {c["user_agent"] for c in clicks} == {"pytest"}
    opens = lines(client.get("/api/logs/opens", headers=auth))
    assert {o["kind"] for o in opens} == {"pixel", "image"}
    attempts = lines(client.get("/api/logs/attempts", headers=auth))
    assert attempts[0]["links"] == ["https://shop.example.com/sale?id=7", "https://shop.example.com/guide"]


def test_logs_filter_by_tag_message_recipient_and_time(
        client: FlaskClient, auth: dict[str, str], traffic: dict[str, Any]) -> None:
    def get(query: str) -> list[dict[str, Any]]:
        resp = client.get(f"/api/logs/clicks?{query}", headers=auth)
        assert resp.status_code == 200, resp.get_json()
        return lines(resp)

    assert {r["tag"] for r in get("tag=spring")} == {"spring"} and len(get("tag=spring")) == 2
    bob = traffic["winter"]["messages"][1]["message"]
    assert {r["message"] for r in get(f"message={bob}")} == {bob} and len(get(f"message={bob}")) == 2
    assert {r["recipient"] for r in get("recipient=ANN@example.com")} == {"ann@example.com"}
    rows = get("")
    middle = rows[3]["time"]
    assert get(f"start={quote(middle)}") == rows[3:]
    assert get(f"start={middle}") == rows[3:]  # an unescaped + (a space once decoded) is understood
    assert get(f"end={middle}") == rows[:3]
    assert get("start=2000-01-01&end=2000-01-02") == []
    assert get("start=2999-01-01T00:00:00%2B02:00") == []
    assert len(lines(client.get("/api/logs/attempts?tag=winter", headers=auth))) == 2
    assert [r["recipient"] for r in lines(client.get("/api/logs/attempts?recipient=cy@example.com",
                                                    headers=auth))] == ["cy@example.com"]


@pytest.mark.parametrize("kind", ["attempts", "clicks"])
def test_after_and_limit_page_through_a_log(client: FlaskClient, auth: dict[str, str], traffic: dict[str, Any],
                                            kind: str) -> None:
    everything = lines(client.get(f"/api/logs/{kind}", headers=auth))
    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        page = lines(client.get(f"/api/logs/{kind}?limit=2&after={after}", headers=auth))
        if not page:
            break
        assert len(page) <= 2
        pages += page
        after = page[-1]["id"]
    assert pages == everything


def test_formats_hold_the_same_rows(client: FlaskClient, auth: dict[str, str], traffic: dict[str, Any]) -> None:
    rows = lines(client.get("/api/logs/clicks", headers=auth))
    as_json = client.get("/api/logs/clicks?format=json", headers=auth)
    assert as_json.mimetype == "application/json" and as_json.get_json() == rows
    as_csv = client.get("/api/logs/clicks?format=csv", headers=auth)
    assert as_csv.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert [r["url"] for r in table] == [r["url"] for r in rows]
    assert client.get("/api/logs/opens?format=json&tag=none", headers=auth).get_json() == []


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    result = submit(client, auth, html=HTML, recipients="ann@example.com", tag="=HYPERLINK(\"http://x\")",
                    subject="+1 offer")
    for ua in ("-2+3", "@SUM(A1)", "\tcmd", "=1+1"):
        click_all(client, result, ua=ua)
    parts.store.add_event(Event("click", int(result["messages"][0]["message"], 16), 1, detail="\rcmd"))
    text = client.get("/api/logs/clicks?format=csv", headers=auth).get_data(as_text=True)
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["user_agent"] for r in table} == {"'-2+3", "'@SUM(A1)", "'\tcmd", "'=1+1", ""}
    assert {r["detail"] for r in table} == {"", "'\rcmd"}
    assert {r["tag"] for r in table} == {"'=HYPERLINK(\"http://x\")"}
    assert {r["subject"] for r in table} == {"'+1 offer"}
    attempts = list(csv.DictReader(io.StringIO(client.get("/api/logs/attempts?format=csv", headers=auth)
                                               .get_data(as_text=True))))
    assert attempts[0]["tag"].startswith("'=")


def test_logs_stream_reads_the_store_lazily(client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    parts.store.write([(
        "INSERT INTO events (event_id, type, ts, attempt_id) VALUES (?, 'click', ?, 1)",
        [(f"e{i:06d}", f"2026-01-01T00:00:00.{i:06d}+00:00") for i in range(2500)])])
    resp = client.get("/api/logs/clicks", headers=auth, buffered=False)
    assert resp.is_streamed
    chunks = iter(resp.response)
    first = next(chunks)
    assert first.startswith(b'{"id": "e000000"')
    # Written after the first bytes went out: the stream has not read that far yet, so it is included.
    parts.store.add_event(Event("click", 1, event_id="late"))
    parts.store.catch_up()  # in the database now, not only in the journal its mover thread empties a moment later
    rest = b"".join(chunks)
    resp.close()
    rows = (first + rest).decode().splitlines()
    assert len(rows) == 2501 and json.loads(rows[-1])["id"] == "late"


@pytest.mark.parametrize(("query", "field"), [
    ("start=yesterday", "start"), ("end=2026-13-01", "end"), ("format=xml", "format"),
    ("message=xyz", "message"), ("after=nope", "after"), ("limit=0", "limit"), ("limit=abc", "limit"),
    ("colour=red", "colour"), ("tag=a&tag=b", "tag"), ("start=0001-01-01T00:00:00%2B14:00", "start"),
    ("limit=" + "9" * 5000, "limit"),
])
def test_bad_log_parameters_are_a_400_naming_them(client: FlaskClient, auth: dict[str, str],
                                                 query: str, field: str) -> None:
    resp = client.get(f"/api/logs/clicks?{query}", headers=auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == field


def test_deliveries_and_failures_logs_are_there_for_those_events(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    parts.store.add_event(Event("delivery", 1, detail="250 ok"))
    rows = lines(client.get("/api/logs/deliveries", headers=auth))
    assert [r["detail"] for r in rows] == ["250 ok"]
    assert lines(client.get("/api/logs/failures", headers=auth)) == []


# -- stats ------------------------------------------------------------------------
def test_stats_overall_per_tag_and_per_message(client: FlaskClient, auth: dict[str, str],
                                               traffic: dict[str, Any]) -> None:
    body = client.get("/api/stats", headers=auth).get_json()
    totals = body["totals"]
    assert totals["messages"] == 3 and totals["unique_clicks"] == 3 and totals["total_clicks"] == 6
    assert totals["unique_opens"] == 3 and totals["total_opens"] == 3
    assert totals["open_rate"] == 1.0 and totals["click_rate"] == 1.0 and totals["click_to_open_rate"] == 1.0
    assert {link["url"] for link in totals["best_links"]} == {"https://shop.example.com/sale?id=7",
                                                             "https://shop.example.com/guide"}
    tags = {t["tag"]: t for t in body["tags"]}
    assert set(tags) == {"spring", "winter"}
    assert tags["winter"]["messages"] == 2 and tags["winter"]["total_clicks"] == 4
    assert tags["spring"]["messages"] == 1 and tags["spring"]["unique_clicks"] == 1
    spring = client.get("/api/stats?tag=spring", headers=auth).get_json()
    assert spring["totals"]["messages"] == 1 and [t["tag"] for t in spring["tags"]] == ["spring"]
    bob = traffic["winter"]["messages"][1]["message"]
    one = client.get(f"/api/stats?message={bob}&links=1", headers=auth).get_json()
    assert one["totals"]["messages"] == 1 and one["totals"]["total_clicks"] == 2
    assert len(one["totals"]["best_links"]) == 1 and [t["tag"] for t in one["tags"]] == ["winter"]


def test_stats_before_any_message_are_zero(client: FlaskClient, auth: dict[str, str]) -> None:
    body = client.get("/api/stats", headers=auth).get_json()
    assert body["tags"] == [] and body["totals"]["messages"] == 0 and body["totals"]["open_rate"] == 0.0


# -- access and contract --------------------------------------------------------------
def api_rules(app: Flask) -> list[tuple[str, set[str]]]:
    """Every /api route as an OpenAPI path, with its methods (the JSON catch-all aside)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api") and rule.endpoint != "api.unknown":
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            found.append((path, {m.lower() for m in rule.methods or ()} - {"head", "options"}))
    return found


def test_every_api_route_is_in_the_openapi_document(app: Flask) -> None:
    doc = openapi.spec()
    rules = api_rules(app)
    assert len(rules) >= 4
    for path, methods in rules:
        assert path in doc["paths"], path
        assert methods <= set(doc["paths"][path]), (path, methods)
    assert {p for p, _ in rules} == set(doc["paths"])


def test_the_document_is_served_and_is_openapi_3_1(client: FlaskClient, auth: dict[str, str]) -> None:
    doc = client.get("/api/openapi.json", headers=auth).get_json()
    assert doc["openapi"] == "3.1.0" and doc == json.loads(json.dumps(openapi.spec()))


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/api/messages"), ("get", "/api/logs/clicks"), ("get", "/api/logs/attempts"), ("get", "/api/stats"),
    ("get", "/api/openapi.json"), ("get", "/api/nothing-here"), ("delete", "/api/messages"), ("get", "/api"),
    ("get", "/api//stats"),
])
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong", "Basic dXNlcjpwYXNz", "bearer ct_0_x"])
def test_everything_under_api_needs_a_key(client: FlaskClient, method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    resp = getattr(client, method)(path, headers=headers, json={"html": HTML})
    assert resp.status_code == 401 and resp.get_json()["error"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_tracking_endpoints_stay_public(client: FlaskClient, auth: dict[str, str]) -> None:
    result = submit(client, auth, html=HTML, recipients="ann@example.com")
    for token in tokens(result["messages"][0]["mime"]):
        assert client.get(f"/{token}/x").status_code in (200, 302)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/api/nothing", 404), ("get", "/api/", 404), ("get", "/api/logs/bounces", 404),
    ("get", "/api", 404), ("get", "/api//stats", 404), ("post", "/api//messages", 404), ("get", "/api/stats/", 404),
    ("get", "/api//", 404), ("delete", "/api/logs//clicks", 404),
    ("get", "/api/messages", 405), ("put", "/api/stats", 405), ("delete", "/api/logs/clicks", 405),
])
def test_other_paths_and_methods_under_api_answer_json(client: FlaskClient, auth: dict[str, str],
                                                       method: str, path: str, status: int) -> None:
    resp = getattr(client, method)(path, headers=auth)
    assert resp.status_code == status and resp.is_json and resp.get_json()["error"], resp.status_code
    if status == 405:
        assert resp.headers["Allow"]


def test_a_failing_store_is_a_json_503(client: FlaskClient, auth: dict[str, str], settings: dict[str, Any]) -> None:
    with sqlite3.connect(settings["database"]) as db:
        db.execute("DROP TABLE links")  # a broken database, as after a bad manual edit
    resp = client.post("/api/messages", json={"html": HTML}, headers=auth)
    assert resp.status_code == 503 and resp.is_json


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
        env: dict[str, str], tmp_path: Path) -> None:
    key = apikeys.create(build(config.load()).store, "schemathesis")[1]
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(openapi.spec()))
    st = str(Path(sys.executable).with_name("st"))
    # A real mail server on loopback, so send: true is tried for real (and answers at once).
    with mail_sink() as sink, gunicorn({**env, "CLICKTRAIL_SYNC": "no",
                                        "CLICKTRAIL_SMTP_UPSTREAM": f"127.0.0.1:{sink.port}"}) as (base, _):
        done = subprocess.run(
            [st, "run", str(schema), "--url", base, "-H", f"Authorization: Bearer {key}",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",  # validity beyond JSON Schema
             # One worker: hypothesis describes its filters with ast.parse, which races across threads on 3.11.
             "--max-examples", "50", "--seed", "20261203", "--workers", "1", "--no-color",
             "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert sink.received  # send: true was among the cases, and went all the way


@pytest.mark.parametrize("path", ["/api/logs/clicks", "/api/logs/attempts?format=json", "/api/stats"])
def test_a_failing_store_is_a_json_503_for_reads_too(client: FlaskClient, auth: dict[str, str],
                                                      settings: dict[str, Any], path: str) -> None:
    with sqlite3.connect(settings["database"]) as db:
        for table in ("events", "links", "attempts"):
            db.execute(f"DROP TABLE {table}")
    resp = client.get(path, headers=auth)
    assert resp.status_code == 503 and resp.get_json()["error"]


def test_a_dkim_signed_mime_is_refused_unless_rewriting_is_allowed(
        settings: dict[str, Any], client: FlaskClient, auth: dict[str, str]) -> None:
    signed = ("DKIM-Signature: v=1; a=rsa-sha256; d=shop.example.com; s=s1; h=from:subject; b=AAAA\r\n"
              "From: shop@shop.example.com\r\nTo: ann@example.com\r\nSubject: Sale\r\n"
              "Content-Type: text/html\r\n\r\n<a href=\"https://shop.example.com/sale\">Sale</a>\r\n")
    r = client.post("/api/messages", json={"mime": signed}, headers=auth)
    assert r.status_code == 400 and r.get_json()["field"] == "mime" and "DKIM-Signature" in r.get_json()["error"]
    app = create_app({**settings, "smtp_rewrite_dkim": True})
    _, key = apikeys.create(app.extensions["clicktrail"].store, "dkim")
    r = app.test_client().post("/api/messages", json={"mime": signed}, headers={"Authorization": f"Bearer {key}"})
    (copy,) = r.get_json()["messages"]
    assert r.status_code == 200 and "DKIM-Signature" not in copy["mime"] and "clicks.example.com" in copy["mime"]
