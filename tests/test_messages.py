"""messages: one scan, one copy and one attempt per recipient, nothing handed out unrecorded."""

import re
import sqlite3
from typing import Any

import pytest

from clicktrail.errors import StoreUnavailable
from clicktrail.messages import track
from clicktrail.tracker import Clicktrail

MIME = (b"From: shop@example.com\nTo: list@example.com\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n"
        b"Message-ID: <m1@example.com>\nContent-Type: text/html; charset=utf-8\n\n"
        b'<body><a href="https://e.com/a">a</a></body>\n')


def test_one_copy_and_attempt_per_recipient(parts: Clicktrail) -> None:
    result = track(parts.store, parts.signer, parts.options, MIME, ["a@e.com", "b@e.com", "c@e.com"], "t1")
    assert [c.recipient for c in result.copies] == ["a@e.com", "b@e.com", "c@e.com"]
    assert len({c.data for c in result.copies}) == 3
    attempts = list(parts.store.attempts())
    assert sorted(a["message"] for a in attempts) == sorted(c.message for c in result.copies)
    assert {(a["subject"], a["message_id"], a["tag"]) for a in attempts} == {("Grüße", "<m1@example.com>", "t1")}
    # Copies differ only in their identifiers.
    strip = lambda d: d.split(b"clicks.example.com/")[0]  # noqa: E731
    assert len({strip(c.data) for c in result.copies}) == 1


def test_recipient_defaults_to_the_to_header(parts: Clicktrail) -> None:
    track(parts.store, parts.signer, parts.options, MIME)
    assert [a["recipient"] for a in parts.store.attempts()] == ["list@example.com"]


def test_recipient_defaults_to_the_bare_addresses_of_the_to_header(parts: Clicktrail) -> None:
    raw = MIME.replace(b"To: list@example.com", b"To: List <list@example.com>,\n  =?utf-8?q?B=C3=B6b?= <bob@example.com>")
    track(parts.store, parts.signer, parts.options, raw)
    assert [a["recipient"] for a in parts.store.attempts()] == ["list@example.com, bob@example.com"]


@pytest.mark.parametrize("header", ["From", "To"])
def test_address_headers_too_deeply_nested_to_read_still_give_a_tracked_copy(parts: Clicktrail, header: str) -> None:
    raw = re.sub(rb"(?m)^" + header.encode() + rb": .*$", header.encode() + b": " + b"(" * 500, MIME)
    result = track(parts.store, parts.signer, parts.options, raw)
    assert result.click_domain == parts.options.base and b"https://clicks.example.com/" in result.copies[0].data
    assert len(list(parts.store.attempts())) == 1


def test_nothing_is_handed_out_when_the_store_cannot_record(parts: Clicktrail, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(parts.store, "_write", broken)
    with pytest.raises(StoreUnavailable, match="the store cannot record it"):
        track(parts.store, parts.signer, parts.options, MIME, ["a@e.com"])


def test_pass_through_message_is_still_recorded_as_an_attempt(parts: Clicktrail) -> None:
    raw = b'From: a@e.com\nTo: z@e.com\nContent-Type: multipart/mixed; boundary="X"\n\n--X\n\nbroken\n'
    result = track(parts.store, parts.signer, parts.options, raw)
    assert result.copies[0].data == raw and result.warnings
    assert [a["links"] for a in parts.store.attempts()] == [[]]
