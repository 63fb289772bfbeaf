"""Stamping many copies fast gives exactly what encoding each copy in full gives."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import BASE, CORPUS

from clicktrail.logstore import Store
from clicktrail.messages import track
from clicktrail.mime import prepare
from clicktrail.rewrite import Options
from clicktrail.submission import compose
from clicktrail.tokens import Signer

SIGNER = Signer(b"stamping secret", (b"older",))
OPTS = Options(BASE)
LINKS = "".join(f'<a href="https://shop.example.com/item/{i}?a=1&amp;b={i}">Item {i}</a> ' for i in range(40))


def messages() -> list[tuple[str, bytes]]:
    found = [(p.name, p.read_bytes()) for p in sorted((CORPUS / "mime").glob("*.eml"))]
    found += [(p.name, p.read_bytes()) for p in sorted((CORPUS / "html").glob("*.html"))[:8]]
    html = "<html><body><p>" + "Long line of text " * 30 + LINKS + "</p></body></html>"
    found.append(("composed-qp", compose(html, "Text https://shop.example.com/x " * 20, "Hi", None, "example.com")))
    b64 = base64.encodebytes(html.encode()).decode()
    found.append(("base64", ("From: a@example.com\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n"
                             "Content-Transfer-Encoding: base64\n\n" + b64).encode()))
    found.append(("8bit-latin1", b"From: a@example.com\nMIME-Version: 1.0\nContent-Type: text/html; "
                  b"charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n<p>Caf\xe9 " + LINKS.encode() + b"</p>\n"))
    return found


@pytest.mark.parametrize(("name", "raw"), messages(), ids=[n for n, _ in messages()])
def test_every_copy_is_what_a_full_encode_gives(tmp_path: Path, name: str, raw: bytes) -> None:
    store = Store(str(tmp_path / "s.db"), str(tmp_path / "s.spool"))
    store.migrate()
    result = track(store, SIGNER, OPTS, raw, [f"r{i}@example.com" for i in range(4)])
    for copy in result.copies:
        attempt = int(copy.message, 16)
        fresh = prepare(raw, OPTS)  # a first render always encodes in full
        assert copy.data == fresh.render(lambda idx, a=attempt: SIGNER.mint(a, idx)), name


def test_identifiers_of_another_length_are_encoded_in_full() -> None:
    raw = compose("<p>" + "x " * 100 + LINKS + "</p>", None, None, None, "example.com")
    prepared = prepare(raw, OPTS)
    copies = [prepared.render(lambda idx, n=n: SIGNER.mint(n, idx)) for n in (1, 2, 3)]
    odd = prepared.render(lambda idx: f"odd{idx}")
    assert odd == prepare(raw, OPTS).render(lambda idx: f"odd{idx}")
    assert len(set(copies)) == 3


@pytest.mark.parametrize(("name", "fast"), [("composed-qp", True), ("8bit-latin1", True), ("base64", False)])
def test_quoted_printable_and_8bit_parts_are_stamped_from_a_layout(tmp_path: Path, name: str, fast: bool) -> None:
    store = Store(str(tmp_path / "s.db"), str(tmp_path / "s.spool"))
    store.migrate()
    raw = dict(messages())[name]
    result = track(store, SIGNER, OPTS, raw, ["a@example.com", "b@example.com", "c@example.com"])
    layouts = [p.layout for p in result.prepared.parts if p.template.changed]
    assert layouts and all(layout is not None and bool(layout[1]) == fast for layout in layouts)
