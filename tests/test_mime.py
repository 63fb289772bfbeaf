"""mime: text parts rewritten in place; everything else byte-identical."""

import base64
import binascii
import email
from email.policy import compat32

import pytest

from clicktrail.mime import BadSwitch, looks_like_mime, prepare
from clicktrail.rewrite import Options

BASE = "https://clicks.example.com"
TOKEN = "T" * 24
OPTS = Options(BASE)


def render(raw: bytes, opts: Options = OPTS) -> bytes:
    return prepare(raw, opts).render(lambda idx: TOKEN)


def message(body_headers: str, body: bytes, extra: str = "", nl: str = "\n") -> bytes:
    head = f"From: a@example.com{nl}To: b@example.com{nl}Subject: Hi{nl}{extra}MIME-Version: 1.0{nl}{body_headers}{nl}"
    return head.encode() + nl.encode() + body


def test_input_kind_is_detected() -> None:
    assert looks_like_mime(b"From: a@example.com\nSubject: x\n\nbody")
    assert looks_like_mime(b"\r\nReturn-Path: <a@b>\r\n\r\n")
    assert not looks_like_mime(b"<!DOCTYPE html><html></html>")
    assert not looks_like_mime(b"  <p>hi</p>")


def test_plain_8bit_html_part_is_rewritten_and_headers_kept() -> None:
    raw = message("Content-Type: text/html; charset=utf-8", b'<p>Gr\xc3\xbc\xc3\x9fe <a href="https://e.com/x">x</a></p>')
    out = render(raw)
    head, body = out.split(b"\n\n", 1)
    assert head == raw.split(b"\n\n", 1)[0]
    assert body.startswith(f'<p>Gr\xfc\xdfe <a href="{BASE}/{TOKEN}/x">x</a></p><img src='.encode())


def test_quoted_printable_soft_break_inside_url_is_found_and_reencoded() -> None:
    html = ('<html><body><a href=3D"https://example.com/account/verify?token=3Dabcdefghijklmnopqrstuv=\n'
            'wxyz0123456789&amp;u=3D42">Verify</a></body></html>\n')
    raw = message("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable", html.encode())
    p = prepare(raw, OPTS)
    assert p.links.links == [("click", "https://example.com/account/verify?token=abcdefghijklmnopqrstuvwxyz0123456789&u=42")]
    body = p.render(lambda idx: TOKEN).split(b"\n\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\n"))
    decoded = binascii.a2b_qp(body).decode()
    assert f'href="{BASE}/{TOKEN}/account/verify?token=abcdefghijklmnopqrstuvwxyz0123456789&amp;u=42"' in decoded
    assert b"=3D" in body


def test_base64_part_stays_base64_with_same_line_width() -> None:
    html = '<html><body><p>Grüße</p><a href="https://example.com/b">B</a></body></html>'.encode()
    b64 = base64.encodebytes(html)  # 76-character lines
    raw = message("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64", b64)
    body = render(raw).split(b"\n\n", 1)[1]
    decoded = base64.b64decode(body).decode("utf-8")
    assert "Grüße" in decoded and f"{BASE}/{TOKEN}/b" in decoded
    assert decoded.count("<img") == 1 and decoded.index("<img") < decoded.index("</body>")
    assert max(len(line) for line in body.split(b"\n")) == 76


def test_iso_8859_1_part_keeps_its_charset() -> None:
    html = '<p>Café</p><a href="https://example.com/wiki/Café">Café</a>'.encode("latin-1")
    raw = message("Content-Type: text/html; charset=iso-8859-1", html)
    p = prepare(raw, Options(BASE, track_opens=False))
    assert p.links.links == [("click", "https://example.com/wiki/Caf%C3%A9")]
    body = p.render(lambda idx: TOKEN).split(b"\n\n", 1)[1]
    assert body == f'<p>Café</p><a href="{BASE}/{TOKEN}/wiki/Caf%C3%A9">Café</a>'.encode("latin-1")


def test_multipart_tree_with_attachments_and_rfc822_left_alone() -> None:
    inner = b"From: x@example.com\nSubject: inner\nContent-Type: text/html\n\n<a href=\"https://inner.example/\">i</a>\n"
    png = base64.encodebytes(b"\x89PNG fake image data https://not-a-link.example/")
    raw = message(
        'Content-Type: multipart/mixed; boundary="OUT"',
        b"preamble\n--OUT\nContent-Type: multipart/alternative; boundary=\"IN\"\n\n"
        b"--IN\nContent-Type: text/plain\n\nSee https://e.com/t\n"
        b"--IN\nContent-Type: text/html\n\n<body><a href=\"https://e.com/h\">h</a></body>\n--IN--\n"
        b"--OUT\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n" + png +
        b"--OUT\nContent-Type: message/rfc822\n\n" + inner +
        b"--OUT\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nhttps://e.com/att\n"
        b"--OUT--\nepilogue\n",
    )
    p = prepare(raw, OPTS)
    assert p.links.links == [("click", "https://e.com/t"), ("click", "https://e.com/h")]
    out = p.render(lambda idx: TOKEN)
    for untouched in (png, inner, b"https://e.com/att", b"preamble\n", b"epilogue\n"):
        assert untouched in out
    tree = lambda m: [part.get_content_type() for part in m.walk()]  # noqa: E731
    assert tree(email.message_from_bytes(out, policy=compat32)) == tree(email.message_from_bytes(raw, policy=compat32))


def test_switch_headers_override_defaults_and_are_removed() -> None:
    raw = message("Content-Type: text/html", b'<body><a href="https://e.com/x">x</a></body>',
                  extra="X-Clicktrail-Trackclicks: no\nX-Clicktrail-Trackopens:\n yes\n")
    p = prepare(raw, Options(BASE, track_clicks=True, track_opens=False))
    assert (p.track_clicks, p.track_opens) == (False, True)
    out = p.render(lambda idx: TOKEN)
    assert b"X-Clicktrail" not in out and b'href="https://e.com/x"' in out and b"o.gif" in out
    assert out.replace(b"\n", b"").startswith(raw.split(b"X-Clicktrail")[0].replace(b"\n", b""))


def test_bad_switch_value_is_a_clear_error() -> None:
    raw = message("Content-Type: text/html", b"<p>x</p>", extra="X-Clicktrail-Trackclicks: maybe\n")
    with pytest.raises(BadSwitch, match="X-Clicktrail-Trackclicks must be yes or no"):
        prepare(raw, OPTS)


def test_crlf_message_keeps_crlf() -> None:
    raw = message("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
                  b'<body><a href=3D"https://e.com/x">x</a>\r\n</body>\r\n', nl="\r\n")
    out = render(raw)
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert out.split(b"\r\n\r\n", 1)[0] == raw.split(b"\r\n\r\n", 1)[0]


@pytest.mark.parametrize(
    "raw",
    [
        b'From: a@e.com\nContent-Type: multipart/mixed; boundary="X"\n\n--X\nContent-Type: text/html\n\n'
        b'<a href="https://e.com/">x</a>\n',  # never closed
        b"From: a@e.com\nContent-Type: multipart/mixed\n\n--X\n\nx\n--X--\n",  # no boundary parameter
        b"From: a@e.com\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
        b"From: a@e.com\nContent-Type: text/html; charset=no-such-charset\n\n<a href=\"https://e.com/\">x</a>\n",
        b"From: a@e.com\nthis is not a header\n\n<a href=\"https://e.com/\">x</a>\n",
        b"From: a@e.com\nContent-Type: text/html\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n",
    ],
)
def test_unreadable_messages_pass_through_unchanged_with_a_warning(raw: bytes) -> None:
    p = prepare(raw, OPTS)
    assert p.render(lambda idx: TOKEN) == raw
    assert p.warnings and "unchanged" in p.warnings[0]
    assert p.links.links == []


def test_a_switch_given_twice_must_agree() -> None:
    raw = message("Content-Type: text/html", b"<p>x</p>",
                  extra="X-Clicktrail-Trackclicks: no\nX-Clicktrail-Trackclicks: yes\n")
    with pytest.raises(BadSwitch, match="given twice"):
        prepare(raw, OPTS)
    same = message("Content-Type: text/html", b"<p>x</p>", extra="X-Clicktrail-Trackclicks: no\nX-Clicktrail-Trackclicks: NO\n")
    assert prepare(same, OPTS).track_clicks is False


@pytest.mark.parametrize(
    ("raw", "why"),
    [(b"", "empty"), (b"  \n", "empty"), (b"<p>\x00</p>", "NUL bytes"), (bytes(range(128, 256)) * 20, "do not decode"),
     (b"just some words, no markup", "no HTML tag")],
)
def test_input_that_is_not_html_passes_through_unchanged(raw: bytes, why: str) -> None:
    p = prepare(raw, OPTS)
    assert p.render(lambda idx: TOKEN) == raw and why in p.warnings[0]


def test_more_links_than_an_identifier_can_number_passes_through_unchanged() -> None:
    html = "".join(f'<a href="https://e.example/{i}">x</a>' for i in range(0x10000)).encode()
    p = prepare(html, OPTS)
    assert p.render(lambda idx: TOKEN) == html and "more than 65,535 distinct links" in p.warnings[0]
    assert p.links.links == []
    mime = message("Content-Type: text/html", html)
    assert prepare(mime, OPTS).render(lambda idx: TOKEN) == mime


@pytest.mark.parametrize(
    "raw",
    [b'Hi:\n\n<a href="https://e.com/x">here</a>', b'Note: see below\n<p><a href="https://e.com/x">x</a></p>',
     b'From the team:\n\n<a href="https://e.com/x">x</a>', b"Dear Ann,\n<p>hi</p>"],
)
def test_html_opening_with_a_colon_line_is_html(raw: bytes) -> None:
    assert not looks_like_mime(raw)


def test_html_opening_with_a_colon_line_gets_its_link_and_pixel() -> None:
    raw = b'Hi:\n\n<a href="https://e.com/x">here</a>'
    out = render(raw)
    assert out.startswith(f'Hi:\n\n<a href="{BASE}/{TOKEN}/x">here</a><img src="{BASE}/{TOKEN}/o.gif"'.encode())


@pytest.mark.parametrize(
    "raw",
    [b"X-Mailer: x\n\nbody", b"From a@b.example Mon Jan  1 00:00:00 2024\nSubject: x\n\nbody",
     b"Received: from a\n by b\nTo: c@example.com\n\nx", b"Foo: bar\nMessage-ID: <a@b>\n\nx",
     b"From: a@example.com\r\nContent-Type: text/html\r\n<a href='https://e.com/'>x</a>"],
)
def test_headers_with_a_message_field_are_mime(raw: bytes) -> None:
    assert looks_like_mime(raw)


def two_html_parts(outer: str, first: bytes = b"text/html", second: bytes = b"text/html") -> bytes:
    return message(
        f'Content-Type: multipart/{outer}; boundary="M"',
        b"--M\nContent-Type: " + first + b'\n\n<body><a href="https://e.com/1">1</a></body>\n'
        b"--M\nContent-Type: " + second + b'\n\n<body><a href="https://e.com/2">2</a></body>\n--M--\n')


def pixels(out: bytes) -> list[int]:
    """Which of the message's parts (split at the boundary) hold the pixel."""
    return [i for i, part in enumerate(out.split(b"\n--M")) if b"/o.gif" in part]


def test_one_pixel_per_message_in_the_first_of_mixed_html_parts() -> None:
    out = render(two_html_parts("mixed"))  # Apple Mail's inline HTML around an attachment
    assert out.count(b"/o.gif") == 1 and pixels(out) == [1]
    assert out.count(f"{BASE}/{TOKEN}/".encode()) == 3  # both links and the one pixel


def test_the_pixel_goes_in_the_html_alternative_whatever_the_order() -> None:
    assert pixels(render(two_html_parts("alternative", b"text/plain"))) == [2]
    assert pixels(render(two_html_parts("alternative", b"text/html", b"text/plain"))) == [1]
    assert pixels(render(two_html_parts("alternative"))) == [2]  # the last alternative is the one shown


def test_the_pixel_goes_in_the_alternative_shown_when_it_is_nested() -> None:
    related = (b'multipart/related; boundary="R"\n\n--R\nContent-Type: text/html\n\n'
               b'<body><a href="https://e.com/r">r</a></body>\n--R\nContent-Type: image/png\n\nPNG\n--R--')
    out = render(two_html_parts("alternative", b"text/plain", related))
    assert out.count(b"/o.gif") == 1 and b'<a href="' + f"{BASE}/{TOKEN}/r".encode() + b'">r</a><img' in out


def test_no_pixel_when_the_only_html_is_an_attachment() -> None:
    out = render(two_html_parts("mixed", b"text/plain", b"text/html\nContent-Disposition: attachment"))
    assert b"/o.gif" not in out


def nested_rfc822(levels: int) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" * levels + b"Subject: x\r\n\r\n<a href='https://e.com/'>x</a>"


def nested_multipart(levels: int) -> bytes:
    head = b"".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(levels))
    tail = b"".join(f"\r\n--b{i}--".encode() for i in reversed(range(levels)))
    return b"From: a@example.com\r\n" + head + b"Content-Type: text/html\r\n\r\n<a href='https://e.com/'>x</a>" + tail


@pytest.mark.parametrize("raw", [nested_rfc822(1000), nested_rfc822(5000), nested_multipart(2000),
                                 nested_multipart(150)], ids=["rfc822 x1000", "rfc822 x5000", "mixed x2000", "mixed x150"])
def test_deeply_nested_messages_pass_through_unchanged_with_a_warning(raw: bytes) -> None:
    p = prepare(raw, OPTS)
    assert p.render(lambda idx: TOKEN) == raw and p.links.links == []
    assert p.warnings and "unchanged" in p.warnings[0] and "nested" in p.warnings[0]


def test_moderately_nested_messages_are_still_rewritten() -> None:
    p = prepare(nested_multipart(50), OPTS)
    assert p.links.links == [("click", "https://e.com/")] and not p.warnings
