"""POST /api/messages with send: true, against a real aiosmtpd mail server on 127.0.0.1."""

from __future__ import annotations

import email
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BASE
from flask import Flask
from flask.testing import FlaskClient
from servers import MailSink, free_port, mail_sink

from clicktrail import apikeys
from clicktrail.tracker import Clicktrail, create_app

SHOP = "https://shop.example.com/sale?id=7"
HTML = f'<html><body><p>Hello</p><a href="{SHOP}">Sale</a></body></html>'
TOKEN = re.compile(re.escape(BASE) + r"/([A-Za-z0-9_-]{24})/sale")  # the link, not the pixel
MIME = ("From: Shop <news@shop.example.com>\r\n"
        "To: Ann <ann@example.com>, bob@example.com\r\n"
        "Subject: Winter sale\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        f"{HTML}\r\n")


@pytest.fixture
def sink() -> Iterator[MailSink]:
    with mail_sink() as s:
        yield s


def make_app(settings: dict[str, Any], upstream: str | None, **more: Any) -> tuple[Flask, dict[str, str]]:
    app = create_app({**settings, "smtp_upstream": upstream, "smtp_hostname": "api.test", **more})
    key = apikeys.create(app.extensions["clicktrail"].store, "shop")[1]
    return app, {"Authorization": f"Bearer {key}"}


@pytest.fixture
def sending(settings: dict[str, Any], sink: MailSink) -> tuple[Flask, dict[str, str]]:
    """An app whose mail server is the sink."""
    return make_app(settings, f"127.0.0.1:{sink.port}")


@pytest.fixture
def client(sending: tuple[Flask, dict[str, str]]) -> FlaskClient:
    return sending[0].test_client()


@pytest.fixture
def auth(sending: tuple[Flask, dict[str, str]]) -> dict[str, str]:
    return sending[1]


@pytest.fixture
def parts(sending: tuple[Flask, dict[str, str]]) -> Clicktrail:
    return sending[0].extensions["clicktrail"]  # type: ignore[no-any-return]


def tokens(data: bytes) -> list[str]:
    """The tracked-link identifiers in a message's decoded text parts."""
    msg = email.message_from_bytes(data)
    texts = [p.get_payload(decode=True) for p in msg.walk() if p.get_content_maintype() == "text"]
    return TOKEN.findall("\n".join(t.decode() for t in texts if isinstance(t, bytes)))


def events(parts: Clicktrail, kind: str) -> list[dict[str, Any]]:
    return list(parts.store.events(kind))


def test_send_delivers_each_recipients_copy_and_answers_its_outcome(
        client: FlaskClient, auth: dict[str, str], sink: MailSink, parts: Clicktrail) -> None:
    resp = client.post("/api/messages", headers=auth, json={
        "html": HTML, "subject": "Sale", "from": "Shop <news@shop.example.com>",
        "recipients": ["ann@example.com", "bob@example.com"], "send": True})
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert answer["delivered"] == 2 and "error" not in answer
    for copy in answer["messages"]:
        assert copy["delivery"]["ok"] is True and copy["delivery"]["code"] == 250
        assert re.match(r"250 2\.0\.0 Ok: queued as Q\d", copy["delivery"]["reply"])
    # Each copy went in its own transaction, from the from field, to its one recipient, exactly as answered.
    assert [(frm, rcpts) for frm, rcpts, _ in sink.received] == [
        ("news@shop.example.com", ["ann@example.com"]), ("news@shop.example.com", ["bob@example.com"])]
    assert [data.decode() for _, _, data in sink.received] == [c["mime"] for c in answer["messages"]]
    assert sorted(e["recipient"] for e in events(parts, "delivery")) == ["ann@example.com", "bob@example.com"]
    assert events(parts, "failure") == [] and len(list(parts.store.attempts())) == 2
    # The copies that went carry links that land.
    (token,) = tokens(sink.received[0][2])
    landed = client.get(f"/{token}/sale")
    assert landed.status_code == 302 and landed.headers["Location"] == SHOP
    assert [e["recipient"] for e in events(parts, "click")] == ["ann@example.com"]


def test_a_mime_message_goes_from_its_from_header_to_each_address_of_its_to(
        client: FlaskClient, auth: dict[str, str], sink: MailSink) -> None:
    resp = client.post("/api/messages", headers=auth, json={"mime": MIME, "send": True})
    assert resp.status_code == 200, resp.get_json()
    assert [c["recipient"] for c in resp.get_json()["messages"]] == ["ann@example.com", "bob@example.com"]
    assert [(frm, rcpts) for frm, rcpts, _ in sink.received] == [
        ("news@shop.example.com", ["ann@example.com"]), ("news@shop.example.com", ["bob@example.com"])]
    found = [tokens(data) for _, _, data in sink.received]
    assert len(found[0]) == 1 and found[0] != found[1]  # one person, one set of identifiers


@pytest.mark.parametrize("value", ["yes", "true", "1", "YES"])
def test_send_as_a_form_field(client: FlaskClient, auth: dict[str, str], sink: MailSink, value: str) -> None:
    resp = client.post("/api/messages", headers=auth, data={
        "html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": value})
    assert resp.status_code == 200 and resp.get_json()["delivered"] == 1
    assert len(sink.received) == 1


@pytest.mark.parametrize("body", [
    {"html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com"},
    {"html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": False},
    {"html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": None},
])
def test_without_send_nothing_is_sent(client: FlaskClient, auth: dict[str, str], sink: MailSink,
                                      parts: Clicktrail, body: dict[str, Any]) -> None:
    resp = client.post("/api/messages", headers=auth, json=body)
    assert resp.status_code == 200
    answer = resp.get_json()
    assert "delivered" not in answer and "delivery" not in answer["messages"][0]
    assert sink.received == [] and events(parts, "delivery") == []


def test_a_refused_copy_is_a_502_that_tells_which_copies_went(
        client: FlaskClient, auth: dict[str, str], sink: MailSink, parts: Clicktrail) -> None:
    sink.refuse_rcpt["bob@example.com"] = "550 5.1.1 <bob@example.com>: no such user"
    resp = client.post("/api/messages", headers=auth, json={
        "html": HTML, "from": "news@shop.example.com", "recipients": ["ann@example.com", "bob@example.com"],
        "send": True})
    assert resp.status_code == 502
    answer = resp.get_json()
    assert answer["field"] is None and "refused 1 of 2 copies" in answer["error"] and "bob@example.com" in answer["error"]
    assert answer["delivered"] == 1
    ann, bob = answer["messages"]
    assert ann["delivery"]["ok"] is True and ann["delivery"]["code"] == 250
    assert bob["delivery"] == {"ok": False, "code": 550, "reply": "550 5.1.1 <bob@example.com>: no such user"}
    assert [rcpts for _, rcpts, _ in sink.received] == [["ann@example.com"]]
    # Nothing is lost: both attempts are recorded, with a delivery for one and a failure for the other.
    assert len(list(parts.store.attempts())) == 2
    assert [(e["recipient"], e["message"]) for e in events(parts, "delivery")] == [("ann@example.com", ann["message"])]
    failures = events(parts, "failure")
    assert [(e["recipient"], e["detail"]) for e in failures] == [("bob@example.com", bob["delivery"]["reply"])]


def test_every_copy_refused_is_a_502_too(client: FlaskClient, auth: dict[str, str], sink: MailSink) -> None:
    sink.refuse_rcpt["ann@example.com"] = "452 4.2.2 mailbox full"
    resp = client.post("/api/messages", headers=auth, json={
        "html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": True})
    assert resp.status_code == 502
    answer = resp.get_json()
    assert answer["delivered"] == 0 and answer["messages"][0]["delivery"]["code"] == 452
    assert sink.received == []


def test_a_mail_server_that_is_down_is_a_503_with_every_attempt_recorded(settings: dict[str, Any]) -> None:
    app, auth = make_app(settings, f"127.0.0.1:{free_port()}")  # nothing listens there
    parts: Clicktrail = app.extensions["clicktrail"]
    resp = app.test_client().post("/api/messages", headers=auth, json={
        "html": HTML, "from": "news@shop.example.com", "recipients": ["ann@example.com", "bob@example.com"],
        "send": True})
    assert resp.status_code == 503
    answer = resp.get_json()
    assert "cannot be reached" in answer["error"] and answer["delivered"] == 0
    assert all(c["delivery"]["code"] == 451 and "unreachable" in c["delivery"]["reply"] for c in answer["messages"])
    assert events(parts, "delivery") == []
    assert sorted(e["recipient"] for e in events(parts, "failure")) == ["ann@example.com", "bob@example.com"]
    assert len(list(parts.store.attempts())) == 2


def test_a_mail_server_that_never_answers_is_a_503_once_its_timeout_passes(settings: dict[str, Any]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        app, auth = make_app(settings, f"127.0.0.1:{silent.getsockname()[1]}", smtp_upstream_timeout=1)
        resp = app.test_client().post("/api/messages", headers=auth, json={
            "html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": True})
    assert resp.status_code == 503
    assert "timed out" in resp.get_json()["messages"][0]["delivery"]["reply"]
    assert len(events(app.extensions["clicktrail"], "failure")) == 1


def test_a_recipient_named_twice_is_sent_one_copy(client: FlaskClient, auth: dict[str, str], sink: MailSink) -> None:
    resp = client.post("/api/messages", headers=auth, json={
        "html": HTML, "from": "news@shop.example.com", "recipients": ["ann@example.com", "ann@example.com"],
        "send": True})
    assert resp.status_code == 200 and len(resp.get_json()["messages"]) == 1
    assert [rcpts for _, rcpts, _ in sink.received] == [["ann@example.com"]]


def test_without_a_mail_server_configured_send_is_a_503_and_nothing_is_recorded(settings: dict[str, Any]) -> None:
    app, auth = make_app(settings, None)
    resp = app.test_client().post("/api/messages", headers=auth, json={
        "html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": True})
    assert resp.status_code == 503
    assert "CLICKTRAIL_SMTP_UPSTREAM" in resp.get_json()["error"]
    assert list(app.extensions["clicktrail"].store.attempts()) == []


NO_TO = MIME.replace("To: Ann <ann@example.com>, bob@example.com\r\n", "")


@pytest.mark.parametrize(("body", "field"), [
    ({"html": HTML, "recipients": "ann@example.com", "send": True}, "from"),
    ({"html": HTML, "from": "not an address", "recipients": "ann@example.com", "send": True}, "from"),
    ({"mime": MIME.replace("From: Shop <news@shop.example.com>\r\n", ""), "send": True}, "mime"),
    ({"mime": MIME.replace("news@shop.example.com", "news..x@shop.example.com"), "send": True}, "mime"),
    ({"mime": MIME.replace("<news@shop.example.com>", "<a@example.com>, b@example.com"), "send": True}, "mime"),
    ({"mime": NO_TO, "send": True}, "recipients"),
    ({"mime": MIME.replace("bob@example.com", "bob@@example.com"), "send": True}, "recipients"),
    ({"html": HTML, "from": "news@shop.example.com", "recipients": "ann@example.com", "send": "yes"}, "send"),
    ({"mime": MIME.replace("Subject:", "DKIM-Signature: v=1; a=rsa-sha256; d=shop.example.com\r\nSubject:"),
      "send": True}, "mime"),
])
def test_a_send_without_a_valid_sender_or_recipient_is_a_400_naming_the_field(
        client: FlaskClient, auth: dict[str, str], sink: MailSink, parts: Clicktrail,
        body: dict[str, Any], field: str) -> None:
    resp = client.post("/api/messages", headers=auth, data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()
    assert error["field"] == field and error["error"]
    assert sink.received == [] and list(parts.store.attempts()) == []


def test_a_bad_form_send_value_is_a_400_naming_it(client: FlaskClient, auth: dict[str, str]) -> None:
    resp = client.post("/api/messages", headers=auth, data={"html": HTML, "send": "maybe"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "send"


def test_dkim_signed_mime_is_sent_rewritten_without_its_signature_when_allowed(
        settings: dict[str, Any], sink: MailSink) -> None:
    app, auth = make_app(settings, f"127.0.0.1:{sink.port}", smtp_rewrite_dkim=True)
    signed = MIME.replace("Subject:", "DKIM-Signature: v=1; a=rsa-sha256; d=shop.example.com\r\nSubject:")
    resp = app.test_client().post("/api/messages", headers=auth, json={"mime": signed, "send": True})
    assert resp.status_code == 200
    assert len(sink.received) == 2
    for _, _, data in sink.received:
        assert b"DKIM-Signature" not in data and SHOP.encode() not in data and tokens(data)
