"""Every message of the shared MIME corpus: same tree, same headers and attachments, text parts still decode.

The email package reads input and output; the only differences allowed are our URL values and the pixel in
text parts (and our switch headers).  Malformed messages come out byte-identical, with a warning.
"""

from __future__ import annotations

import email
import html
import logging
import re
from email.message import Message
from email.policy import compat32
from pathlib import Path

import html5lib
import pytest
from flask.testing import FlaskClient

from clicktrail import messages
from clicktrail.mime import SWITCHES
from clicktrail.rewrite import PIXEL_ATTRS
from clicktrail.tracker import Clicktrail
from clicktrail.urls import browser_url

BASE = "https://clicks.example.com"  # the click domain of the test settings
CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "mime"
MESSAGES = sorted(CORPUS.glob("*.eml"))
# Known malformed: a nested multipart reusing the outer boundary, broken header folding, an unclosed multipart.
MALFORMED = {"cpython-msg_15.eml", "mimekit-issue358.eml", "spamscope-malformed_3.eml"}
TOKEN = r"[A-Za-z0-9_-]{24}"
# Our value in an attribute runs to its end; in plain text a closing mark is the sentence's, not the URL's.
OURS = {
    True: re.compile(re.escape(BASE) + "/" + TOKEN + r"""(?:/[^\s"'<>]*)?"""),
    False: re.compile(re.escape(BASE) + "/" + TOKEN + r"""(?:/(?:[^\s"'<>]*[^\s"'<>.,;:!?)\]}*])?)?"""),
}
PIXEL = re.compile(r'<img src="' + re.escape(BASE) + "/" + TOKEN + '/o.gif" ' + re.escape(PIXEL_ATTRS) + ">")


def rewritten_parts(msg: Message) -> list[Message]:
    """The parts the rewriter owns: inline text/html and text/plain outside attached messages."""
    found = []
    for part in _entities(msg):
        disposition = str(part.get("content-disposition", "")).strip().lower()
        if part.get_content_type() in ("text/html", "text/plain") and not disposition.startswith("attachment"):
            found.append(part)
    return found


def _entities(msg: Message) -> list[Message]:
    out = [msg]
    if msg.get_content_maintype() == "multipart" and msg.is_multipart():
        for sub in msg.get_payload():
            assert isinstance(sub, Message)
            out += _entities(sub)
    return out


def shape(msg: Message) -> object:
    """The MIME tree: content types and nesting, down into attached messages."""
    if msg.is_multipart():
        return (msg.get_content_type(), [shape(sub) for sub in msg.get_payload() if isinstance(sub, Message)])
    return msg.get_content_type()


def text_of(part: Message) -> str:
    """Decode a text part with its declared transfer encoding and charset."""
    cte = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
    if cte == "base64":
        assert re.fullmatch(r"[A-Za-z0-9+/=\r\n]*", str(part.get_payload(decode=False)))
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    return raw.decode(part.get_content_charset() or "us-ascii", "surrogateescape")


def attr_value(raw: str) -> str:
    """An attribute value as a browser reads it (html5lib's tree builder, not our scanner)."""
    quote = "'" if '"' in raw else '"'
    frag = html5lib.parseFragment(f"<a href={quote}{raw}{quote}>x</a>", namespaceHTMLElements=False)
    return str(frag.find("a").get("href"))


def originals(out_text: str, in_text: str, is_html: bool) -> list[str]:
    """Line up output and input: everything but our values must be equal; return the values we replaced."""
    out_text = PIXEL.sub("", out_text, count=1)
    assert not PIXEL.search(out_text), "more than one pixel"
    literals = OURS[is_html].split(out_text)
    value = r"""([^"'<>\s]+)""" if is_html else r"([^\s<>]+)"
    pattern = value.join(re.escape(x) for x in literals)
    m = re.fullmatch(pattern, in_text, re.S)
    assert m, "the output differs from the input outside our URL values"
    return list(m.groups())


def test_corpus_is_there() -> None:
    assert len(MESSAGES) == 25


@pytest.mark.parametrize("path", MESSAGES, ids=[p.name for p in MESSAGES])
def test_corpus_message_keeps_its_tree_headers_and_attachments(
    path: Path, parts: Clicktrail, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    raw = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="clicktrail.messages"):
        result = messages.track(parts.store, parts.signer, parts.options, raw, ["reader@example.com"])
    [copy] = result.copies
    out = copy.data
    if path.name in MALFORMED:
        assert out == raw
        assert result.warnings and any("unchanged" in r.getMessage() for r in caplog.records)
        return
    assert result.warnings == []

    before = email.message_from_bytes(raw, policy=compat32)
    after = email.message_from_bytes(out, policy=compat32)
    assert shape(after) == shape(before)
    assert [type(d) for d in after.defects] == [type(d) for d in before.defects] == []
    assert [(k, v) for k, v in before.items() if k.lower() not in SWITCHES] == after.items()
    head = raw.split(b"\n\n", 1)[0] if b"\r\n\r\n" not in raw[:20000] else raw.split(b"\r\n\r\n", 1)[0]
    assert out.startswith(head)

    texts = {id(p) for p in rewritten_parts(before)}
    pairs = list(zip(_entities(before), _entities(after), strict=True))
    for old, new in pairs:
        assert new.items() == old.items()
        assert new.preamble == old.preamble and new.epilogue == old.epilogue
        if id(old) not in texts and not old.is_multipart():
            assert new.get_payload(decode=False) == old.get_payload(decode=False)  # byte-identical body

    for old, new in pairs:
        if id(old) not in texts:
            continue
        cte = str(new.get("content-transfer-encoding", "7bit")).strip().lower()
        body = str(new.get_payload(decode=False))
        if cte in ("quoted-printable", "base64") and body != old.get_payload(decode=False):
            assert all(len(line) <= 76 for line in body.splitlines())  # re-encoded by us: RFC 2045 lines
        is_html = old.get_content_type() == "text/html"
        new_text = text_of(new)
        new_text.encode(new.get_content_charset() or "us-ascii")  # strict: no byte we could not encode
        values = originals(new_text, text_of(old), is_html)
        links = OURS[is_html].findall(PIXEL.sub("", new_text))
        if is_html:
            links = [html.unescape(u) for u in links]
        for link, value in zip(links, values, strict=True):
            want = browser_url(attr_value(value) if is_html else value)
            resp = client.get(link[len(BASE):].split("#", 1)[0])
            assert resp.status_code == 302 and resp.headers["Location"] == want


@pytest.mark.parametrize("path", [p for p in MESSAGES if p.name not in MALFORMED], ids=lambda p: p.name)
def test_corpus_message_loses_only_our_switch_headers(path: Path, parts: Clicktrail) -> None:
    raw = path.read_bytes()
    nl = b"\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    head, sep, body = raw.partition(nl + nl)
    opens_off = b"X-Clicktrail-Trackopens:" + nl + b" no"  # folded, as a header may be
    switched = b"X-Clicktrail-Trackclicks: yes" + nl + head + nl + opens_off + sep + body
    result = messages.track(parts.store, parts.signer, parts.options, switched)
    assert result.copies[0].data.startswith(head + sep)  # every other header byte for byte, in place
    assert not result.prepared.track_opens and all(kind == "click" for kind, _ in result.prepared.links.links)
