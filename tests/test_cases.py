"""Real-world link cases (issue 3): each lands exactly on the URL a browser requests, and logs that URL.

Every case drives the real path: a message goes through ``messages.track`` with the app's store and signer,
each rewritten link is followed with the Flask test client, and the answer's ``Location`` and the logged
click are compared with the expected URL, character for character.
"""

from __future__ import annotations

import base64
import binascii
import email
import html
import re
from email.message import Message
from email.policy import compat32

import pytest
from flask.testing import FlaskClient

from clicktrail import messages
from clicktrail.rewrite import PIXEL_ATTRS
from clicktrail.tracker import Clicktrail

BASE = "https://clicks.example.com"  # the click domain of the test settings
TOKEN = r"[A-Za-z0-9_-]{24}"
# One of our values as it appears in an attribute or in plain text (escaped for the attribute).
# In plain text a trailing full stop, comma or closing bracket is the sentence's, as the rewriter reads it.
OURS = re.compile(re.escape(BASE) + "/" + TOKEN + r"""(?:/(?:[^\s"'<>]*[^\s"'<>.,;:!?)»”。…])?)?""")
PIXEL = re.compile(r'<img src="' + re.escape(BASE) + "/" + TOKEN + '/o.gif" ' + re.escape(PIXEL_ATTRS) + ">")
HEADERS = (b"From: news@example.com\r\nTo: reader@example.com\r\nSubject: Cases\r\n"
           b"Message-ID: <cases@example.com>\r\nMIME-Version: 1.0\r\n")


def track(parts: Clicktrail, raw: bytes, recipients: tuple[str | None, ...] = (None,)) -> list[bytes]:
    """Run a message through the real path; return each recipient's copy."""
    result = messages.track(parts.store, parts.signer, parts.options, raw, recipients)
    return [c.data for c in result.copies]


def ours(text: str, is_html: bool = True) -> list[str]:
    """Our click links in a rewritten text, as a browser reads them (entities decoded), pixel left out."""
    found = [m.group() for m in OURS.finditer(PIXEL.sub("", text))]
    if is_html:
        found = [html.unescape(u) for u in found]
    return [u for u in found if not u.endswith("/o.gif")]


def restore(out: str, originals: list[str]) -> str:
    """Put the original values back in place of ours, in order, and drop the pixel."""
    values = iter(originals)
    restored = OURS.sub(lambda m: next(values), PIXEL.sub("", out))
    assert next(values, None) is None, "fewer links were rewritten than expected"
    return restored


def clicks(parts: Clicktrail) -> list[str]:
    return [e["url"] for e in parts.store.events("click")]


def land(client: FlaskClient, parts: Clicktrail, link: str) -> str:
    """Follow one of our links; return where it redirects, checking the logged URL is the same string."""
    assert link.startswith(BASE + "/")
    logged = len(clicks(parts))
    resp = client.get(link[len(BASE):].split("#", 1)[0])
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    assert clicks(parts)[logged:] == [location]
    return location


def html_part(body: bytes, charset: str = "utf-8", cte: str = "8bit") -> bytes:
    return HEADERS + (f"Content-Type: text/html; charset={charset}\r\n"
                      f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body


def only_part(raw: bytes) -> Message:
    msg = email.message_from_bytes(raw, policy=compat32)
    assert not msg.defects and not msg.is_multipart()
    return msg


# -- 1. fragments ----------------------------------------------------------------------------------------------

def test_case01_fragment_is_kept_and_nothing_of_ours_follows_it(client: FlaskClient, parts: Clicktrail) -> None:
    src = '<html><body><a href="https://example.com/docs/page?x=1#section-2">Docs</a></body></html>'
    [out] = track(parts, src.encode())
    [link] = ours(out.decode())
    assert link.endswith("/docs/page?x=1#section-2")
    assert land(client, parts, link) == "https://example.com/docs/page?x=1#section-2"


# -- 2. entities -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("https://example.com/reset?key=123&amp;id=456", "https://example.com/reset?key=123&id=456"),
        ("https://example.com/wp-login.php?action=rp&#038;key=K1&#038;login=user1",
         "https://example.com/wp-login.php?action=rp&key=K1&login=user1"),
        ("https://example.com/r?a=1&#x26;b=2&AMP;c=3", "https://example.com/r?a=1&b=2&c=3"),
        # No ';' and '=' follows: browsers keep the entity name literal in an attribute.
        ("https://example.com/r?x=1&region=eu&currency=EUR", "https://example.com/r?x=1&region=eu&currency=EUR"),
    ],
)
def test_case02_entities_are_decoded_once(client: FlaskClient, parts: Clicktrail, href: str, expected: str) -> None:
    src = f'<p><a href="{href}">Reset</a></p>'
    [out] = track(parts, src.encode())
    text = out.decode()
    [link] = ours(text)
    assert land(client, parts, link) == expected
    assert "amp;" not in clicks(parts)[0] and "#038;" not in clicks(parts)[0]
    assert restore(text, [href]) == src


# -- 3. spaces -------------------------------------------------------------------------------------------------

def test_case03_spaces_become_percent_20_never_plus_or_double_escaped(client: FlaskClient, parts: Clicktrail) -> None:
    src = '<a href="https://files.example.com/shop/Logo App (1).png">Logo</a><a href=" https://e.com/a%20b ">x</a>'
    [out] = track(parts, src.encode())
    first, second = ours(out.decode())
    assert land(client, parts, first) == "https://files.example.com/shop/Logo%20App%20(1).png"
    assert land(client, parts, second) == "https://e.com/a%20b"
    assert not any("+" in u or "%2520" in u for u in clicks(parts))


# -- 4. non-ASCII ----------------------------------------------------------------------------------------------

CAFE = '<html><body><a href="https://example.com/wiki/Café?q=naïve">Café</a></body></html>\r\n'
CAFE_URL = "https://example.com/wiki/Caf%C3%A9?q=na%C3%AFve"


def test_case04_non_ascii_in_a_utf8_page(client: FlaskClient, parts: Clicktrail) -> None:
    [out] = track(parts, CAFE.encode())
    text = out.decode("utf-8")
    [link] = ours(text)
    assert land(client, parts, link) == CAFE_URL
    assert ">Café</a>" in text
    assert restore(text, ["https://example.com/wiki/Café?q=naïve"]) == CAFE


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_case04_non_ascii_in_an_iso_8859_1_part(client: FlaskClient, parts: Clicktrail, cte: str) -> None:
    body = CAFE.encode("iso-8859-1")
    if cte == "quoted-printable":
        body = binascii.b2a_qp(body, istext=True)
    elif cte == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    [out] = track(parts, html_part(body, "iso-8859-1", cte))
    part = only_part(out)
    decoded = part.get_payload(decode=True)
    assert isinstance(decoded, bytes)
    text = decoded.decode("iso-8859-1")
    [link] = ours(text)
    assert land(client, parts, link) == CAFE_URL
    assert b">Caf\xe9</a>" in decoded
    assert restore(text, ["https://example.com/wiki/Café?q=naïve"]) == CAFE


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("https://bücher.example/straße?q=ß", "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%9F"),
        ("https://straße.example/", "https://xn--strae-oqa.example/"),  # not "strasse": browsers are non-transitional
        ("https://ＥＸＡＭＰＬＥ．com/a", "https://example.com/a"),
        ("https://example.com\\files\\a b.pdf?p=a\\b", "https://example.com/files/a%20b.pdf?p=a\\b"),
        ("https://example.com:0443/x", "https://example.com/x"),
        ("HTTPS://Example.COM:8443/Path", "https://example.com:8443/Path"),
        ("\n  https://example.com/a\tb\n", "https://example.com/ab"),
        # Kept raw by browsers in a query or fragment: no "%5B", "%7C", "%5E", "%60" of ours.
        ("https://example.com/list?filter[tag]=a|b&x=^&y=`#sec|1^", "https://example.com/list?filter[tag]=a|b&x=^&y=`#sec|1^"),
        ("https://example.com/a|b^c/[1]", "https://example.com/a|b^c/[1]"),
    ],
)
def test_kind_what_a_browser_requests(client: FlaskClient, parts: Clicktrail, href: str, expected: str) -> None:
    src = f'<a href="{href}">Go</a>'
    [out] = track(parts, src.encode())
    [link] = ours(out.decode())
    assert land(client, parts, link) == expected
    assert restore(out.decode(), [href]) == src


@pytest.mark.parametrize("meta", ['<meta charset="iso-8859-1">',
                                  '<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">'])
@pytest.mark.parametrize("mime", [False, True])
def test_case04_non_ascii_in_a_page_that_declares_iso_8859_1(
    client: FlaskClient, parts: Clicktrail, meta: str, mime: bool
) -> None:
    page = CAFE.replace("<body>", f"<head>{meta}</head><body>")
    raw = page.encode("iso-8859-1")
    if mime:  # a part with no charset parameter: the page's own declaration is all a client has
        raw = HEADERS + b"Content-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + raw
    [out] = track(parts, raw)
    assert out.startswith(raw[: raw.index(b"<a href")]) and b">Caf\xe9</a>" in out
    [link] = ours(out.decode("iso-8859-1"))
    assert land(client, parts, link) == CAFE_URL


# -- 5. other schemes ------------------------------------------------------------------------------------------

def test_case05_mailto_tel_sms_are_untouched_and_the_https_link_beside_them_is_tracked(
    client: FlaskClient, parts: Clicktrail
) -> None:
    src = ('<p><a href="mailto:help@example.com?subject=Hi%20there&amp;body=x">Mail</a> '
           '<a href="tel:+1-555-0100">Call</a> <a href="sms:+15550100?body=hi">Text</a> '
           '<a href="https://example.com/contact">Contact</a></p>')
    [out] = track(parts, src.encode())
    text = out.decode()
    [link] = ours(text)
    assert restore(text, ["https://example.com/contact"]) == src
    assert clicks(parts) == []
    assert land(client, parts, link) == "https://example.com/contact"


# -- 6. merge tags ---------------------------------------------------------------------------------------------

def test_case06_unrendered_merge_tags_are_left_alone(client: FlaskClient, parts: Clicktrail) -> None:
    src = ('<a href="https://example.com/profile?email={contactfield=email}">Profile</a>'
           '<a href="{{ unsubscribe_url }}">Unsubscribe</a><a href="*|UNSUB|*">Unsub</a>'
           '<a href="https://example.com/ok">OK</a></body>')
    [out] = track(parts, src.encode())
    text = out.decode()
    [link] = ours(text)
    assert restore(text, ["https://example.com/ok"]) == src
    assert land(client, parts, link) == "https://example.com/ok"


# -- 7. Outlook VML --------------------------------------------------------------------------------------------

VML = (
    '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:w="urn:schemas-microsoft-com:office:word">\r\n<body>\r\n'
    '<div><!--[if mso]>\r\n  <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
    'xmlns:w="urn:schemas-microsoft-com:office:word" href="https://example.com/offer?id=7&src=mso" '
    'style="height:40px;v-text-anchor:middle;width:200px;" arcsize="10%" stroke="f" fillcolor="#d62828">\r\n'
    '    <w:anchorlock/>\r\n    <center>Offer</center>\r\n  </v:roundrect>\r\n<![endif]-->'
    '<!--[if !mso]><!-- --><a href="https://example.com/offer?id=7&amp;src=web" '
    'style="background-color:#d62828;display:inline-block;">Offer</a><!--<![endif]--></div>\r\n</body>\r\n</html>\r\n'
)


def test_case07_outlook_vml_button_and_its_fallback_are_tracked(client: FlaskClient, parts: Clicktrail) -> None:
    [out] = track(parts, VML.encode())
    text = out.decode()
    mso, web = ours(text)
    assert land(client, parts, mso) == "https://example.com/offer?id=7&src=mso"
    assert land(client, parts, web) == "https://example.com/offer?id=7&src=web"
    originals = ["https://example.com/offer?id=7&src=mso", "https://example.com/offer?id=7&amp;src=web"]
    assert restore(text, originals) == VML
    assert re.search("</div>\r\n" + PIXEL.pattern + "</body>\r\n</html>\r\n$", text)


# -- 8. quoted-printable soft break inside a URL ---------------------------------------------------------------

QP_BODY = (
    b'<html><body><p>Please verify your address.</p><p><a href=3D"https://example.com/account/verify?t=\r\n'
    b'oken=3Dabcdefghijklmnopqrstuvwxyz0123456789&amp;u=3D42" style=3D"color:#3366=\r\n'
    b'cc">Verify</a></p><p>Gr=C3=BC=C3=9Fe, caf=C3=A9 =3D good</p></body></html>\r\n'
)


def test_case08_quoted_printable_soft_break_inside_a_url(client: FlaskClient, parts: Clicktrail) -> None:
    [out] = track(parts, html_part(QP_BODY, cte="quoted-printable"))
    body = out.split(b"\r\n\r\n", 1)[1]
    for line in body.split(b"\r\n"):
        assert len(line) <= 76
        assert re.fullmatch(rb"(?:[\x21-\x3c\x3e-\x7e \t]|=[0-9A-F]{2})*=?", line), line
    assert b"\n" not in body.replace(b"\r\n", b"")
    decoded = only_part(out).get_payload(decode=True)
    assert isinstance(decoded, bytes)
    text = decoded.decode("utf-8")
    [link] = ours(text)
    assert land(client, parts, link) == "https://example.com/account/verify?token=abcdefghijklmnopqrstuvwxyz0123456789&u=42"
    original = only_part(html_part(QP_BODY, cte="quoted-printable")).get_payload(decode=True)
    assert isinstance(original, bytes)
    href = "https://example.com/account/verify?token=abcdefghijklmnopqrstuvwxyz0123456789&amp;u=42"
    assert restore(text, [href]) == original.decode("utf-8")


def test_kind_an_8bit_line_is_never_pushed_past_998_octets(parts: Clicktrail) -> None:
    line = " ".join(f'<a href="https://e.co/{i}">{i}</a>' for i in range(25))  # 25 links on one 8bit line
    html_line = f"<html><body><p>{line}</p></body></html>\r\n"
    assert len(html_line) < 998
    raw = HEADERS + (
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + html_line.encode() + b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Short https://example.com/plain link\r\n--b--\r\n")
    result = messages.track(parts.store, parts.signer, parts.options, raw)
    out = result.copies[0].data
    assert max(len(x) for x in out.split(b"\r\n")) <= 998
    assert html_line.encode() in out  # that part as it was, untracked
    assert ours(out.decode(), is_html=False)
    assert any("998" in w for w in result.warnings)
    assert [u for _, u in result.prepared.links.links] == ["https://example.com/plain"]

    # A line that was already too long is not ours to fix: that part is tracked as usual.
    longer = raw.replace(b"<p>", b"<p>" + b"x" * 1000)
    result = messages.track(parts.store, parts.signer, parts.options, longer)
    assert len(result.prepared.links.links) == 26 and result.warnings == []


# -- 9. base64 -------------------------------------------------------------------------------------------------

def test_case09_base64_part(client: FlaskClient, parts: Clicktrail) -> None:
    src = '<html><body><p>Grüße</p><a href="https://example.com/b">B</a></body></html>'
    [out] = track(parts, html_part(base64.encodebytes(src.encode()).replace(b"\n", b"\r\n"), cte="base64"))
    body = out.split(b"\r\n\r\n", 1)[1]
    lines = body.split(b"\r\n")
    assert lines[-1] == b"" and all(re.fullmatch(rb"[A-Za-z0-9+/]{1,76}={0,2}", x) for x in lines[:-1])
    text = base64.b64decode(body, validate=False).decode("utf-8")
    assert "<p>Grüße</p>" in text
    assert len(PIXEL.findall(text)) == 1 and re.search(PIXEL.pattern + "</body></html>$", text)
    [link] = ours(text)
    assert land(client, parts, link) == "https://example.com/b"
    assert restore(text, ["https://example.com/b"]) == src


# -- 10. plain text --------------------------------------------------------------------------------------------

TEXT = ("Reset here:\r\n\r\n<https://example.com/wp-login.php?action=rp&key=KEY123&login=user1>\r\n\r\n"
        "Thanks. Read https://example.com/page. Or (see https://example.com/faq), \"https://example.com/q\".\r\n"
        "«https://example.com/fr» “https://example.com/en”… https://example.com/ja。\r\n")


def test_case10_plain_text_urls_keep_brackets_and_full_stops_outside(client: FlaskClient, parts: Clicktrail) -> None:
    raw = HEADERS + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + TEXT.encode()
    [out] = track(parts, raw)
    text = out.split(b"\r\n\r\n", 1)[1].decode()
    links = ours(text, is_html=False)
    assert [land(client, parts, u) for u in links] == [
        "https://example.com/wp-login.php?action=rp&key=KEY123&login=user1",
        "https://example.com/page", "https://example.com/faq", "https://example.com/q",
        "https://example.com/fr", "https://example.com/en", "https://example.com/ja",
    ]
    assert not any(u.endswith((">", "%3E", ".", ")", '"')) for u in clicks(parts))
    assert restore(text, ["https://example.com/wp-login.php?action=rp&key=KEY123&login=user1",
                          "https://example.com/page", "https://example.com/faq", "https://example.com/q",
                          "https://example.com/fr", "https://example.com/en", "https://example.com/ja"]) == TEXT


# -- 11. open redirect -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "path",
    ["/c?url=https%3A%2F%2Fevil.example.net%2F", "/r/https://evil.example.net/", "/https://evil.example.net/",
     "/" + "A" * 24 + "/x?url=https://evil.example.net/", "/redirect?to=https://evil.example.net/",
     "//evil.example.net/", "/%2F%2Fevil.example.net", "/x//evil.example.net/", "/" + "A" * 24 + "//evil.example.net"],
)
def test_case11_anything_but_a_genuine_link_is_404_without_location(
    client: FlaskClient, parts: Clicktrail, path: str
) -> None:
    resp = client.get(path)
    assert resp.status_code == 404 and "Location" not in resp.headers
    assert clicks(parts) == []


def test_case11_a_genuine_link_with_a_url_appended_lands_only_on_its_own_original(
    client: FlaskClient, parts: Clicktrail
) -> None:
    [out] = track(parts, b'<a href="https://example.com/home">Home</a>')
    [link] = ours(out.decode())
    resp = client.get(link[len(BASE):] + "?url=https://evil.example.net/")
    assert resp.status_code == 302 and resp.headers["Location"] == "https://example.com/home"
    resp = client.get(link[len(BASE):] + "/https://evil.example.net/")
    assert resp.status_code == 302 and resp.headers["Location"] == "https://example.com/home"
    token = link[len(BASE) + 1:].split("/", 1)[0]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    resp = client.get(f"/{forged}/?url=https://evil.example.net/")
    assert resp.status_code == 404 and "Location" not in resp.headers
    assert clicks(parts) == ["https://example.com/home"] * 2


def test_case11_a_double_slash_in_the_original_path_lands_in_one_hop(client: FlaskClient, parts: Clicktrail) -> None:
    [out] = track(parts, b'<a href="https://example.com/a//b/">Home</a>')
    [link] = ours(out.decode())
    assert land(client, parts, link) == "https://example.com/a//b/"


# -- 12. counting ----------------------------------------------------------------------------------------------

def test_case12_ten_recipients_one_opens_ten_times(client: FlaskClient, parts: Clicktrail) -> None:
    src = b'<html><body><p>Hello</p><a href="https://example.com/x">x</a></body></html>'
    copies = track(parts, src, tuple(f"user{i}@example.com" for i in range(10)))
    assert len(copies) == 10
    pixels = [PIXEL.search(c.decode()) for c in copies]
    assert all(pixels) and len({p.group() for p in pixels if p}) == 10
    first = pixels[0]
    assert first is not None
    src_url = re.search(r'src="([^"]+)"', first.group())
    assert src_url is not None
    for _ in range(10):
        resp = client.get(src_url.group(1)[len(BASE):])
        assert resp.status_code == 200 and resp.mimetype == "image/gif"
    s = parts.store.stats()
    assert (s["messages"], s["unique_opens"], s["total_opens"]) == (10, 1, 10)
    assert s["open_rate"] == pytest.approx(0.10)
