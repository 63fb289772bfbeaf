"""submission: what POST /api/messages reads from JSON and forms, and refuses, naming the field."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from test_api import HTML, NEWSLETTER, lines, submit
from werkzeug.datastructures import MultiDict
from werkzeug.test import encode_multipart

from clicktrail.submission import MAX_RECIPIENTS
from clicktrail.tracker import Clicktrail

DEEP = "(" * 500  # the stdlib address parser recurses once per "(": this exhausts the stack
TWO_TO = NEWSLETTER.replace(b"To: reader@example.com", b"To: Ann <ann@example.com>, bob@example.com")


def post_form(client: FlaskClient, auth: dict[str, str], fields: list[tuple[str, str]], content_type: str) -> Any:
    """Post form fields, encoded here: the test client spools a large multipart body to a file it leaves open."""
    if content_type == "multipart/form-data":
        boundary, body = encode_multipart(MultiDict(fields))
        content_type += f"; boundary={boundary}"
    else:
        body = "&".join(f"{quote(n)}={quote(v)}" for n, v in fields).encode()
    return client.post("/api/messages", data=body, headers={**auth, "Content-Type": content_type})


def mime_with(header: str, value: str) -> str:
    return f"{header}: {value}\nSubject: x\nContent-Type: text/html\n\n{HTML}\n"


@pytest.mark.parametrize(("body", "field"), [
    ({"html": HTML, "recipients": DEEP}, "recipients"),
    ({"html": HTML, "recipients": ["ann@example.com", DEEP]}, "recipients"),
    ({"html": HTML, "from": DEEP}, "from"),
    ({"html": HTML, "from": DEEP, "recipients": "ann@example.com", "send": True}, "from"),
    ({"mime": mime_with("From", DEEP)}, "mime"),
    ({"mime": mime_with("From", DEEP), "recipients": "ann@example.com", "send": True}, "mime"),
    ({"mime": "From: a@example.com\n" + mime_with("To", DEEP)}, "mime"),
    ({"mime": "From: a@example.com\n" + mime_with("To", DEEP), "send": True}, "mime"),
    ({"mime": mime_with("From", "(" * 100_000)}, "mime"),
])
def test_deeply_nested_addresses_are_a_400_naming_the_field(client: FlaskClient, auth: dict[str, str],
                                                           parts: Clicktrail, body: dict[str, Any], field: str) -> None:
    resp = client.post("/api/messages", json=body, headers=auth)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["field"] == field
    assert list(parts.store.attempts()) == []


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/x-www-form-urlencoded"])
def test_a_form_takes_the_documented_1000_recipients_and_names_recipients_past_them(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail, content_type: str) -> None:
    everyone = [("recipients", f"u{i}@example.com") for i in range(MAX_RECIPIENTS)]
    resp = post_form(client, auth, [("html", HTML), *everyone], content_type)
    assert resp.status_code == 200, resp.get_json()
    assert len(resp.get_json()["messages"]) == MAX_RECIPIENTS
    for extra in ([("recipients", "one@example.com")], [("recipients", f"x{i}@example.com") for i in range(5000)]):
        resp = post_form(client, auth, [("html", HTML), *everyone, *extra], content_type)
        assert resp.status_code == 400 and resp.get_json()["field"] == "recipients", resp.get_json()
    assert len(list(parts.store.attempts())) == MAX_RECIPIENTS  # the refused ones recorded nothing


def test_many_repeated_parts_of_another_field_name_it(client: FlaskClient, auth: dict[str, str]) -> None:
    resp = post_form(client, auth, [("html", HTML)] * 2000, "multipart/form-data")
    assert resp.status_code == 400 and resp.get_json()["field"] == "html"


@pytest.mark.parametrize("content_type", [
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=" + "b" * 71,
    "multipart/form-data; boundary=zz",
])
def test_a_multipart_body_that_does_not_follow_its_boundary_says_so(
        client: FlaskClient, auth: dict[str, str], content_type: str) -> None:
    resp = client.post("/api/messages", data=b"html=<p>hi</p>", headers={**auth, "Content-Type": content_type})
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert "multipart/form-data body" in error and "no content" not in error


def test_a_multipart_body_cut_before_its_closing_boundary_is_refused(client: FlaskClient,
                                                                     auth: dict[str, str]) -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="html"\r\n\r\n<p>hi</p>\r\n--zz'
    resp = client.post("/api/messages", data=body, headers={**auth, "Content-Type": "multipart/form-data; boundary=zz"})
    assert resp.status_code == 400 and "cut short" in resp.get_json()["error"]


@pytest.mark.parametrize("body", [b"html=%ff%fe", b"html=\xff\xfe", b"html=<p>x</p>&subject=%e9t%e9"])
def test_urlencoded_bytes_that_are_not_utf8_are_refused_not_replaced(client: FlaskClient, auth: dict[str, str],
                                                                     body: bytes) -> None:
    resp = client.post("/api/messages", data=body,
                       headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 400
    field = resp.get_json()["field"]
    assert resp.get_json()["error"] == f"{field} is not UTF-8 text"


def test_multipart_text_fields_that_are_not_utf8_are_refused_like_uploads(client: FlaskClient,
                                                                          auth: dict[str, str]) -> None:
    body = b'--zz\r\nContent-Disposition: form-data; name="html"\r\n\r\n<p>\xff\xfe</p>\r\n--zz--\r\n'
    resp = client.post("/api/messages", data=body, headers={**auth, "Content-Type": "multipart/form-data; boundary=zz"})
    assert resp.status_code == 400 and resp.get_json() == {"error": "html is not UTF-8 text", "field": "html"}


def test_form_values_arrive_exactly_as_sent(client: FlaskClient, auth: dict[str, str]) -> None:
    html = "<p>Grüße &amp; 100% + mehr</p>"
    for content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        resp = client.post("/api/messages", data={"html": html, "subject": "a+b c"}, headers=auth,
                           content_type=content_type)
        assert resp.status_code == 200, resp.get_json()
        mime = resp.get_json()["messages"][0]["mime"]
        assert "Subject: a+b c" in mime and "Grüße &amp; 100% + mehr" in mime


@pytest.mark.parametrize("body", [
    {"html": HTML, "recipients": "<" * 500_000},
    {"html": HTML, "color" * 100_000: "x"},
    {"html": HTML, "trackclicks": None, "tag": "x" * 500_000},
    {"mime": "From: a@example.com\nX-Clicktrail-Trackopens: " + "y" * 500_000 + "\n\nhi\n"},
])
def test_an_error_quotes_a_long_bad_value_cut_short(client: FlaskClient, auth: dict[str, str],
                                                    body: dict[str, Any]) -> None:
    resp = client.post("/api/messages", json=body, headers=auth)
    assert resp.status_code == 400 and len(resp.get_data()) < 1000, resp.get_data()[:300]
    assert resp.get_json()["field"]


def test_a_long_bad_address_is_quoted_with_an_ellipsis(client: FlaskClient, auth: dict[str, str]) -> None:
    error = client.post("/api/messages", json={"html": HTML, "recipients": "<" * 5000}, headers=auth).get_json()
    assert "'" + "<" * 100 + "…'" in error["error"] and "<" * 101 not in error["error"]


# -- without recipients: one copy per address of To --------------------------------------------------------------
def test_without_recipients_each_address_of_to_gets_its_copy_recorded_bare(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    # As with send: true (tests/test_api_send.py), where each copy goes to its own address.
    result = submit(client, auth, mime=TWO_TO.decode())
    assert [c["recipient"] for c in result["messages"]] == ["ann@example.com", "bob@example.com"]
    assert sorted(a["recipient"] for a in parts.store.attempts()) == ["ann@example.com", "bob@example.com"]
    ann = lines(client.get("/api/logs/attempts?recipient=ann@example.com", headers=auth))
    assert [r["message"] for r in ann] == [result["messages"][0]["message"]]


def test_an_address_named_twice_in_to_gets_one_copy(client: FlaskClient, auth: dict[str, str]) -> None:
    raw = NEWSLETTER.replace(b"To: reader@example.com", b"To: ann@example.com, Ann <ann@example.com>")
    assert [c["recipient"] for c in submit(client, auth, mime=raw.decode())["messages"]] == ["ann@example.com"]


def test_a_message_without_to_is_one_copy_without_recipient(client: FlaskClient, auth: dict[str, str]) -> None:
    raw = NEWSLETTER.replace(b"To: reader@example.com\n", b"")
    assert [c["recipient"] for c in submit(client, auth, mime=raw.decode())["messages"]] == [None]


@pytest.mark.parametrize("to", [b"To: Ann", b"To: ann@@example.com, bob@example.com",
                                b"To: " + b", ".join(b"u%d@example.com" % i for i in range(MAX_RECIPIENTS + 1))])
def test_a_to_that_cannot_be_the_recipients_is_a_400_naming_recipients(
        client: FlaskClient, auth: dict[str, str], parts: Clicktrail, to: bytes) -> None:
    raw = NEWSLETTER.replace(b"To: reader@example.com", to)
    resp = client.post("/api/messages", json={"mime": raw.decode()}, headers=auth)
    assert resp.status_code == 400 and resp.get_json()["field"] == "recipients"
    assert list(parts.store.attempts()) == []
    given = client.post("/api/messages", data=json.dumps({"mime": raw.decode(), "recipients": "ann@example.com"}),
                        content_type="application/json", headers=auth)
    assert given.status_code == 200  # naming the recipients is the way out


@pytest.mark.parametrize(("body", "content_type"), [
    (b"x&" * 4_000_000, "application/x-www-form-urlencoded"),
    (b"html=<p>x</p>&" + b"recipients=a@example.com&" * 300_000, "application/x-www-form-urlencoded"),
    (json.dumps({"html": HTML, "recipients": ["a@example.com"] * 500_000}).encode(), "application/json"),
])
def test_a_body_of_very_many_fields_is_refused_at_the_first_one_too_many(
        client: FlaskClient, auth: dict[str, str], body: bytes, content_type: str) -> None:
    started = time.monotonic()
    resp = client.post("/api/messages", data=body, headers={**auth, "Content-Type": content_type})
    assert resp.status_code == 400 and resp.get_json()["field"] in ("x", "recipients")
    assert time.monotonic() - started < 5  # not every field read first
