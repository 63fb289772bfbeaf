"""Property: for any HTML, the rewriter never raises and changes nothing but URL values (and adds the pixel).

Documents are generated as a list of pieces: literal markup and text, which must come out unchanged, and URL
attribute values, which may each come out unchanged or as one of our links.  The output must match exactly
that; each of our links must name a link whose URL is what a browser requests for the value it replaced.
"""

from __future__ import annotations

import base64
import binascii
import email
import html
import re
from email.message import Message
from email.policy import compat32

import html5lib
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clicktrail.mime import prepare_mime
from clicktrail.rewrite import PIXEL_ATTRS, LinkTable, Options, html_template, text_template
from clicktrail.urls import Target, browser_url

BASE = "https://clicks.example.com"
# Our value runs to the end of the attribute value: to its quote, or to a space or ">" when unquoted.
OURS = {q: re.escape(BASE) + r"/[0-9]{24}" + rf"(?:/[^{stop}]*)?" for q, stop in (('"', '"'), ("'", "'"), ("", r"\s>"))}
PIXEL = '<img src="' + re.escape(BASE) + '/0{24}/o.gif" ' + re.escape(PIXEL_ATTRS) + ">"

Piece = tuple[str, str, str]  # (kind, text, quote): kind "lit", "val" (a URL value) or "end" (the </body>)

SPACE = st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\r", "\f", " \r\n\t"])
OPT_SPACE = st.one_of(st.just(""), SPACE)
ENTITY = st.sampled_from(["&amp;", "&#038;", "&#x26;", "&AMP;", "&region=", "&copy", "&nbsp;", "&quot;", "&#39;",
                          "&lt;", "&gt;", "&#0;", "&#x110000;", "&bogus;", "&", "&amp", "&#", "&;"])
WORD = st.text(alphabet=st.sampled_from(list("abcXYZ019 é€😀-_.~!$()*+,;:@/?=%[]{}|^`\\\u00a0\x00\ufeff\x85\u2028")
                                       + ["\udcff"]), max_size=8)  # U+DCFF: an undecodable byte, surrogate-escaped
TEXT = st.lists(st.one_of(WORD, ENTITY, SPACE, st.sampled_from(["a < b", "1<2", ">", "x.com", "www.e.com"])),
                max_size=5).map("".join)


URL_WORD = st.text(alphabet=st.sampled_from(list("abcXYZ019 é€😀-_.~!$()*+,;:@/?=%[]|^`'\"\\\u00a0\x00")), max_size=8)


@st.composite
def url_value(draw: st.DrawFn, quote: str) -> str:
    """Mostly http(s) links a browser follows, with every oddity; sometimes anything else."""
    scheme = draw(st.sampled_from(["https://"] * 6 + ["http://", "HTTPS://", "hTTp://", "mailto:", "tel:", "sms:",
                                   "javascript:", "", "//", "#", "ftp://", "cid:", "data:,"]))
    host = draw(st.sampled_from(["example.com"] * 5 + ["EXAMPLE.com:8080", "bücher.example", "straße.de",
                                 "ex ample.com", "e.com:443", "user:pw@e.com", "[::1]", "", "e.com:bad", "{{host}}",
                                 "e.com\\", "ｅ．com"]))
    parts = draw(st.lists(st.one_of(URL_WORD, ENTITY, st.sampled_from(
        ["/", "?", "#", "&", "%20", "%zz", "%C3%A9", "\n", "\t", " "])), max_size=6))
    value = draw(OPT_SPACE) + scheme + host + "".join(parts) + draw(OPT_SPACE)
    bad = {'"': '"', "'": "'", "": "\"'<>=` \t\n\r\f"}[quote]
    value = "".join(c for c in value if c not in bad)
    return value or "x"


@st.composite
def attribute(draw: st.DrawFn, name: str) -> list[Piece]:
    """`` name=value`` with any quoting, case and spacing; the value is a URL value piece."""
    quote = draw(st.sampled_from(['"', "'", ""]))
    spelled = draw(st.sampled_from([name, name.upper(), name.title()]))
    eq = draw(OPT_SPACE) + "=" + draw(OPT_SPACE)
    value = draw(url_value(quote))
    return [("lit", draw(SPACE) + spelled + eq + quote, ""), ("val", value, quote), ("lit", quote, "")]


@st.composite
def other_attributes(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["class", "style", "title", "target", "data-x", "alt", "width", "disabled"]))
        quote = draw(st.sampled_from(['"', "'"]))
        value = draw(TEXT).replace(quote, "")
        out.append(draw(SPACE) + name + "=" + quote + value + quote)
    return "".join(out)


@st.composite
def link_tag(draw: st.DrawFn, in_comment: bool) -> list[Piece]:
    name, attr = draw(st.sampled_from(
        [("a", "href"), ("a", "href"), ("area", "href"), ("img", "src"), ("v:roundrect", "href")]
        if in_comment else [("a", "href"), ("a", "href"), ("area", "href"), ("img", "src")]))
    pieces: list[Piece] = [("lit", "<" + name + draw(other_attributes()), "")]
    pieces += draw(attribute(attr))
    if draw(st.booleans()):  # a duplicate: the browser keeps the first, so this one is never ours
        pieces.append(("lit", f' {attr}="https://example.com/duplicate"', ""))
    # no "/>" right after the value: an unquoted value would take the "/"
    pieces.append(("lit", draw(other_attributes()) + draw(st.sampled_from([">", " >", " />"])), ""))
    if name in ("a", "v:roundrect"):
        inner = draw(st.sampled_from(["", "<span>", "<b>"])) + draw(TEXT)
        pieces.append(("lit", inner + f"</{name}>", ""))
    return pieces


@st.composite
def block(draw: st.DrawFn, in_comment: bool = False, depth: int = 0) -> list[Piece]:
    kind = draw(st.sampled_from(["text", "link", "link", "comment", "mso", "revealed", "raw", "markup"]
                                if depth < 2 else ["text", "link", "markup"]))
    if kind == "text":
        return [("lit", draw(TEXT), "")]
    if kind == "link":
        return list(draw(link_tag(in_comment)))
    if kind == "comment":  # an ordinary comment: nothing in it is a link
        text = draw(TEXT).replace("-", "")  # no "-->" or "--!>" that would end it early
        return [("lit", "<!-- " + text + ' <a href="https://example.com/c">x</a> -->', "")]
    if kind == "mso":  # Outlook reads inside: its links are tracked
        inner = draw(st.lists(block(True, depth + 1), max_size=3))
        opener = draw(st.sampled_from(["<!--[if mso]>", "<!--[if gte mso 9]>", "<!--[if (mso)|(IE)]>"]))
        return [("lit", opener, "")] + [p for b in inner for p in b] + [("lit", "<![endif]-->", "")]
    if kind == "revealed":  # downlevel-revealed: ordinary markup between two comments
        inner = draw(st.lists(block(in_comment, depth + 1), max_size=3))
        return [("lit", "<!--[if !mso]><!-->", "")] + [p for b in inner for p in b] + [("lit", "<!--<![endif]-->", "")]
    if kind == "raw":  # raw text: what looks like a tag in it is not one
        name = draw(st.sampled_from(["style", "script", "title", "textarea", "xmp"]))
        return [("lit", f'<{name}>a[href="https://example.com/s"] <a href="https://example.com/r">{draw(WORD)}'
                        f"</{name}>", "")]
    tag = draw(st.sampled_from(["p", "div", "td", "table", "center", "br", "tr", "font"]))
    return [("lit", f"<{tag}{draw(other_attributes())}>{draw(TEXT)}" + draw(st.sampled_from(["", f"</{tag}>"])), "")]


@st.composite
def document(draw: st.DrawFn) -> list[Piece]:
    body = [p for b in draw(st.lists(block(), max_size=8)) for p in b]
    if draw(st.booleans()):
        head = draw(st.sampled_from(["<!DOCTYPE html>", "", "<!doctype html PUBLIC \"-//W3C//DTD XHTML 1.0//EN\">"]))
        body = [("lit", head + "<html><head><title>T</title></head><body" + draw(other_attributes()) + ">", "")] + body
        body += [("end", "</body>", ""), ("lit", draw(OPT_SPACE) + "</html>" + draw(OPT_SPACE), "")]
    return body


def decoded(value: str, quote: str) -> str:
    """The attribute value a browser sees (html5lib's tree builder, not our scanner)."""
    frag = html5lib.parseFragment(f"<a href={quote}{value}{quote}>x</a>", namespaceHTMLElements=False)
    return str(frag.find("a").get("href"))


def check_html(pieces: list[Piece], out: str, links: LinkTable, opens: bool) -> None:
    """``out`` is the document of ``pieces`` with only URL values replaced, each by the right link of ours."""
    pattern, values = [], []
    for kind, text, quote in pieces:
        if kind == "val":
            pattern.append(f"({re.escape(text)}|{OURS[quote]})")
            values.append((text, quote))
        elif kind == "end":
            pattern.append(f"(?:{PIXEL})?" + re.escape(text))
        else:
            pattern.append(re.escape(text))
    pattern.append(f"(?:{PIXEL})?")
    m = re.fullmatch("".join(pattern), out, re.S)
    assert m is not None, "the output differs from the input outside the URL values"
    assert len(re.findall(PIXEL, out)) == (1 if opens else 0)

    for (raw, quote), got in zip(values, m.groups(), strict=True):
        if got == raw:
            continue
        link = html.unescape(got)
        idx = int(link[len(BASE) + 1:][:24])
        kind, url = links.links[idx - 1]
        assert url == browser_url(decoded(raw, quote))
        assert link == f"{BASE}/{idx:024d}/{Target(url).visible}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document(), st.booleans())
def test_rewrite_changes_nothing_but_url_values(pieces: list[Piece], opens: bool) -> None:
    src = "".join(text for _, text, _ in pieces)
    links = LinkTable()
    out = html_template(src, links, Options(BASE, track_opens=opens)).render(lambda idx: f"{idx:024d}")
    check_html(pieces, out, links, opens)


BOUNDARY = "QQ-clicktrail-QQ"  # Q is in no generated text, so no line of a body can be a delimiter


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document(), st.sampled_from(["8bit", "quoted-printable", "base64"]), st.sampled_from(["\r\n", "\n"]),
       st.booleans())
def test_mime_part_changes_nothing_but_url_values(pieces: list[Piece], cte: str, nl: str, latin1: bool) -> None:
    src = "".join(text for _, text, _ in pieces)
    try:
        charset, data = "iso-8859-1", src.encode("iso-8859-1") if latin1 else b""
    except UnicodeEncodeError:
        latin1 = False
    if not latin1:
        charset, data = "utf-8", src.encode("utf-8", "surrogateescape")
    if cte == "base64":
        body = base64.encodebytes(data).replace(b"\n", nl.encode())
    elif cte == "quoted-printable":
        body = binascii.b2a_qp(data, istext=False).replace(b"=\n", b"=" + nl.encode())  # CR, LF as =0D, =0A
    else:
        assume(not data.endswith(b"\r"))  # it would join the delimiter's line break, as RFC 2046 reads it
        body = data  # the line break before the next delimiter belongs to the delimiter
    head = (f"From: a@example.com{nl}To: b@example.com{nl}MIME-Version: 1.0{nl}"
            f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"{nl}{nl}--{BOUNDARY}{nl}'
            f"Content-Type: text/html; charset={charset}{nl}Content-Transfer-Encoding: {cte}{nl}{nl}")
    tail = (f"{nl}--{BOUNDARY}{nl}Content-Type: image/gif{nl}Content-Transfer-Encoding: base64{nl}{nl}R0lG{nl}"
            f"--{BOUNDARY}--{nl}")
    raw = head.encode() + body + tail.encode()

    prepared = prepare_mime(raw, Options(BASE))
    out = prepared.render(lambda idx: f"{idx:024d}")
    if prepared.warnings:  # left as it was, and said so
        assert out == raw or all("998" in w for w in prepared.warnings)
        return
    assert out.startswith(head.encode()) and out.endswith(tail.encode())
    new_body = out[len(head):len(out) - len(tail)]
    if cte != "8bit":
        assert max(len(x) for x in new_body.replace(b"\r\n", b"\n").split(b"\n")) <= 76
        assert b"\r" not in new_body.replace(b"\r\n", b"")
    msg = email.message_from_bytes(out, policy=compat32)
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/alternative", "text/html", "image/gif"]
    part = msg.get_payload(0)
    assert isinstance(part, Message)
    text = part.get_payload(decode=True)
    assert isinstance(text, bytes)
    check_html(pieces, text.decode(charset, "surrogateescape"), prepared.links, True)


TEXT_AROUND = st.sampled_from([" ", "\r\n", "\n\n", "\t", "(", ")", "<", ">", "[", "]", '"', "'", ".", ",", ";", ":",
                               "!", "?", "…", "»", "«", "“", "”", "。", "（", "）", "*", "x", "é", "-", "/", "&amp;"])
TEXT_URL = st.builds(
    lambda scheme, host, tail: scheme + host + tail,
    st.sampled_from(["https://"] * 4 + ["http://", "HTTPS://", "https:/", "ftp://", "mailto:"]),
    st.sampled_from(["example.com"] * 4 + ["EXAMPLE.com:8080", "bücher.example", "e.com:443", "{{host}}", "e.com:bad"]),
    st.text(alphabet=st.sampled_from(list("/?#&=.,;:!()[]*'%~-_aZ9é…”»。")), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(TEXT_AROUND, TEXT_URL, TEXT_URL), max_size=12))
def test_plain_text_changes_nothing_but_urls(chunks: list[str]) -> None:
    src = "".join(chunks)
    links = LinkTable()
    out = text_template(src, links, Options(BASE)).render(lambda idx: f"{idx:024d}")
    ours = sorted(((f"{BASE}/{i:024d}/{Target(url).visible}", i) for i, (_, url) in enumerate(links.links, 1)),
                  key=lambda x: -len(x[0]))
    if not ours:
        assert out == src
        return
    found = re.compile("|".join(re.escape(u) for u, _ in ours))
    literals = found.split(out)
    m = re.fullmatch(r"(\S+?)".join(re.escape(x) for x in literals), src, re.S)
    assert m is not None, "the output differs from the input outside the URLs"
    urls = {u: i for u, i in ours}
    for link, span in zip(found.findall(out), m.groups(), strict=True):
        assert browser_url(span) == links.links[urls[link] - 1][1]
        assert not span.endswith((".", ",", ";", ":", "!", "?", "…", "”", "»", "。"))  # the sentence keeps its stop
