"""End to end: every corpus message rewritten, then every link clicked through real gunicorn.

For each HTML template the output is checked against the input independently
of the rewriter: with our tracked URLs cut out (and the pixel removed), the
output must be the input with only URL values cut out, and each cut original
value must be the URL its tracked link redirects to.
"""

from __future__ import annotations

import email
import re
from email.message import Message
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CORPUS
from servers import free_port, gunicorn

from clicktrail import config
from clicktrail.messages import track
from clicktrail.tokens import Signer
from clicktrail.tracker import build
from clicktrail.urls import browser_url

_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def attr_decode(value: str) -> str:
    """Decode character references that end with ';' (all the corpus uses), as a reference."""
    import html

    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), value)


def text_parts(msg: Message) -> list[str]:
    out = []
    for part in msg.walk():
        if part.get_content_type() in ("text/html", "text/plain") and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload.decode(part.get_content_charset() or "ascii", "surrogateescape"))
    return out


def check_fidelity(original: str, rewritten: str, base: str, locations: dict[str, str]) -> int:
    """Cut our URLs out of the output; the rest must be the input with only URL values cut. Return cuts."""
    pixel = re.compile(re.escape(f'<img src="{base}/') + r'[A-Za-z0-9_-]{24}/o\.gif"[^>]*>')
    assert len(pixel.findall(rewritten)) == 1
    rewritten = pixel.sub("", rewritten)
    ours = re.compile(re.escape(base) + r"/[A-Za-z0-9_-]{24}(?:/[^\"'\s<>]*)?")
    tokens = [m.group(0)[len(base) + 1 : len(base) + 25] for m in ours.finditer(rewritten)]
    pieces = ours.split(rewritten)
    assert original.startswith(pieces[0])
    pos = len(pieces[0])
    for token, piece in zip(tokens, pieces[1:], strict=True):
        nxt = original.find(piece, pos) if piece else len(original)
        assert nxt >= 0, f"output text not in the input after offset {pos}: {piece[:80]!r}"
        gap = original[pos:nxt]
        assert browser_url(attr_decode(gap)) == locations[token], (gap, locations[token])
        pos = nxt + len(piece)
    assert pos == len(original)
    return len(tokens)


def corpus_inputs() -> list[Path]:
    return sorted((CORPUS / "html").glob("*.html")) + sorted((CORPUS / "mime").glob("*.eml"))


@pytest.mark.slow
def test_corpus_round_trip_through_gunicorn(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"CLICKTRAIL_CLICK_DOMAIN": base, "CLICKTRAIL_DATABASE": str(tmp_path / "e2e.db"),
           "CLICKTRAIL_SECRET_KEY": "e2e-secret", "CLICKTRAIL_STATS_PASSWORD": "pw"}
    parts = build(config.load(env))
    signer: Signer = parts.signer
    cases: list[tuple[Path, Any, str]] = []
    for path in corpus_inputs():
        raw = path.read_bytes()
        result = track(parts.store, signer, parts.options, raw, ["reader@example.com"], path.stem)
        cases.append((path, result, result.copies[0].data.decode("utf-8", "surrogateescape")))
    assert len(cases) == 62

    expected_clicks: list[str] = []
    expected_opens: list[tuple[str, str | None]] = []
    cuts = 0
    session = requests.Session()
    with gunicorn(env, workers=2, port=port) as (url, _):
        assert url == base
        for path, result, out in cases:
            links = result.prepared.links.links
            if path.suffix == ".html":
                texts = [out]
            else:
                texts = text_parts(email.message_from_bytes(result.copies[0].data, policy=compat32))
            found = sorted({m for t in texts for m in re.findall(re.escape(base) + r"/[A-Za-z0-9_-]{24}/[^\"'\s<>]*", t)})
            locations: dict[str, str] = {}
            for link in found:
                token = link[len(base) + 1 : len(base) + 25]
                ref = signer.verify(token)
                assert ref is not None
                resp = session.get(link.replace("&amp;", "&").split("#")[0], allow_redirects=False, timeout=10)
                if ref.link_idx == 0:
                    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/gif"
                    expected_opens.append(("pixel", None))
                    continue
                kind, target = links[ref.link_idx - 1]
                assert resp.status_code == 302, (path.name, link)
                assert resp.headers["Location"] == target, (path.name, link)
                locations[token] = target
                if kind == "click":
                    expected_clicks.append(target)
                else:
                    expected_opens.append(("image", target))
            # Every link we recorded appears in the output, and the pixel in every HTML output.
            assert {ref.link_idx for t in [signer.verify(x[len(base) + 1: len(base) + 25]) for x in found]
                    if (ref := t)} >= set(range(1, len(links) + 1)), path.name
            if path.suffix == ".html":
                cuts += check_fidelity(path.read_bytes().decode("utf-8", "surrogateescape"), out, base, locations)
    assert cuts > 150
    assert len(expected_clicks) >= 70 and len(expected_opens) >= 100
    clicks = list(parts.store.events("click"))
    opens = list(parts.store.events("open"))
    assert sorted(e["url"] for e in clicks) == sorted(expected_clicks)
    assert sorted((e["kind"], e["url"]) for e in opens) == sorted(expected_opens, key=lambda x: (x[0], x[1] or ""))
    assert all(e["recipient"] == "reader@example.com" for e in clicks + opens)
