"""Exact source offsets of HTML tags, found with html5lib's tokenizer.

This module is the only one that touches html5lib internals (pinned to 1.1).
It yields each tag with its true character range in the caller's text and
the range of every attribute value, so callers can splice values without
re-serializing anything.  Conditional comments (``<!--[if mso]>…<![endif]-->``)
are tokenized again, so markup such as VML buttons inside them is found too.
The last item is an ``End``: where markup added to the document is still read
as markup (not inside an unclosed comment, raw-text element or tag).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from html5lib import _inputstream, _tokenizer
from html5lib.constants import tokenTypes

START, END, EMPTY, COMMENT = (
    tokenTypes["StartTag"],
    tokenTypes["EndTag"],
    tokenTypes["EmptyTag"],
    tokenTypes["Comment"],
)
TEXT = (tokenTypes["Characters"], tokenTypes["SpaceCharacters"])
SPACE = "\t\n\f\r "
# Where a browser looks for <meta charset> (the HTML spec's prescan).
PRESCAN_BYTES = 1024

# The tree builder, not the tokenizer, switches these elements to raw text;
# without the switch their contents (CSS, scripts) would be read as tags.
_RAW_STATES = {
    "style": "rawtextState",
    "xmp": "rawtextState",
    "iframe": "rawtextState",
    "noembed": "rawtextState",
    "noframes": "rawtextState",
    "script": "scriptDataState",
    "title": "rcdataState",
    "textarea": "rcdataState",
    "plaintext": "plaintextState",
}


@dataclass
class Attr:
    """One attribute as written: lower-cased name, decoded value, source ranges."""

    name: str
    value: str
    span: tuple[int, int]  # the whole attribute, from its name to its value's end
    value_span: tuple[int, int] | None  # inside the quotes; None when written bare
    quote: str  # '"', "'" or "" (unquoted)
    lead: int  # start of the whitespace before the attribute


@dataclass
class Tag:
    kind: str  # "start", "end" or "comment"
    name: str
    start: int
    end: int
    attrs: dict[str, Attr] = field(default_factory=dict)
    in_comment: bool = False
    self_closing: bool = False


@dataclass
class Text:
    data: str
    in_comment: bool = False


@dataclass
class End:
    """Where markup appended to the document is read as markup: its end, or where an unclosed construct began."""

    at: int


class _WholeStream(_inputstream.HTMLUnicodeInputStream):
    """Reads the document as one chunk, so ``chunkOffset`` is a true offset."""

    def __init__(self, source: str) -> None:
        self._defaultChunkSize = len(source) + 2
        super().__init__(source)
        self.reportCharacterErrors = None  # parse errors are not used, and this pass costs a regex over the whole text


class _Tokenizer(_tokenizer.HTMLTokenizer):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.stream = _WholeStream(text)
        self.tag_start = -1

    def tagOpenState(self) -> bool:
        self.tag_start = self.stream.chunkOffset - 1
        return bool(super().tagOpenState())

    def offset(self) -> int:
        return int(self.stream.chunkOffset)


def _normalize_newlines(text: str) -> tuple[str, list[int]]:
    """Replace CRLF and CR with LF as html5lib does; remember where CRs went."""
    if "\r" not in text:
        return text, []
    removed = []
    out = []
    i = 0
    pos = 0  # position in the normalized text
    while True:
        j = text.find("\r", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        pos += j - i
        if text.startswith("\r\n", j):
            removed.append(pos)  # the LF that stands for this CRLF
            out.append("\n")
            i = j + 2
        else:
            out.append("\n")
            i = j + 1
        pos += 1
    return "".join(out), removed


def attribute_spans(src: str, base: int) -> list[tuple[str, tuple[int, int], tuple[int, int] | None, str, int]]:
    """Lex one tag's source (``<name …>``) into attribute ranges, per the HTML spec states."""
    out = []
    n = len(src)
    i = 1
    while i < n and src[i] not in SPACE + "/>":
        i += 1
    while i < n:
        lead = i
        while i < n and (src[i] in SPACE or src[i] == "/"):
            i += 1
        if i >= n or src[i] == ">":
            break
        name_start = i
        i += 1  # a first '=' belongs to the name
        while i < n and src[i] not in SPACE + "/>=":
            i += 1
        name = src[name_start:i]
        j = i
        while j < n and src[j] in SPACE:
            j += 1
        value_span = None
        quote = ""
        if j < n and src[j] == "=":
            j += 1
            while j < n and src[j] in SPACE:
                j += 1
            if j < n and src[j] in "\"'":
                quote = src[j]
                close = src.find(quote, j + 1)
                if close < 0:
                    close = n
                value_span = (base + j + 1, base + close)
                i = close + 1
            else:
                k = j
                while k < n and src[k] not in SPACE + ">":
                    k += 1
                value_span = (base + j, base + k)
                i = k
        out.append((name.lower(), (base + name_start, base + i), value_span, quote, base + lead))
    return out


def _closed_comment(source: str) -> bool:
    """True when a comment token's source ends the comment (not cut off by the end of the text)."""
    if not source.startswith("<!--"):
        return source.endswith(">")  # a bogus comment (<!x …>, <?x …>, </ …>) ends at ">"
    return source in ("<!-->", "<!--->") or source.endswith(("-->", "--!>"))


def _unfinished_tag(text: str, tag_start: int, last_end: int) -> bool:
    """True when the text ends inside a tag, declaration or end tag that produced no token."""
    if tag_start < last_end or tag_start < 0:
        return False
    after = text[tag_start + 1 : tag_start + 2]
    return after.isascii() and (after.isalpha() or after in ("!", "?", "/"))


def _tags(text: str, base: int, in_comment: bool) -> Iterator[Tag | Text | End]:
    tok = _Tokenizer(text)
    raw_start = -1  # a raw-text element not closed yet: appended markup would be its text
    cut_comment = -1  # a comment the end of the text cut off
    last_end = 0
    for token in tok:
        ttype = token["type"]
        if ttype in TEXT:
            yield Text(token["data"], in_comment)
            continue
        if ttype not in (START, END, EMPTY, COMMENT):
            continue
        start, end = tok.tag_start, tok.offset()
        last_end = end
        if ttype == END:
            raw_start = -1  # in raw text only the element's own end tag is a token
        if ttype == COMMENT and end == len(text) and start >= 0 and not _closed_comment(text[start:end]):
            cut_comment = start
        if start < 0 or not text.startswith("<", start) or text[end - 1 : end] != ">":
            continue  # not a tag we can place exactly (e.g. cut off by end of file)
        if ttype == COMMENT:
            yield Tag("comment", "", base + start, base + end, in_comment=in_comment)
            body = text[start:end]
            opened = body.find("]>") + 2  # after "[if mso]>": the rest is what Outlook renders
            if body.startswith("<!--[if") and body.endswith("-->") and opened > 1:
                yield from _tags(body[opened:-3], base + start + opened, True)
            continue
        name = token["name"]
        if ttype == END:
            yield Tag("end", name, base + start, base + end, in_comment=in_comment)
            continue
        tag = Tag("start", name, base + start, base + end, in_comment=in_comment,
                  self_closing=ttype == EMPTY or bool(token.get("selfClosing")))
        decoded = token["data"]
        for aname, span, vspan, quote, lead in attribute_spans(text[start:end], base + start):
            if aname in tag.attrs or aname not in decoded:
                continue  # html5lib keeps the first of duplicates
            tag.attrs[aname] = Attr(aname, decoded[aname], span, vspan, quote, lead)
        if len(tag.attrs) == len(decoded):
            yield tag
        state = _RAW_STATES.get(name)
        if state and ttype == START and not token.get("selfClosing"):
            tok.state = getattr(tok, state)
            raw_start = start
    if not in_comment:
        cuts = [at for at in (raw_start, cut_comment) if at >= 0]
        if _unfinished_tag(text, tok.tag_start, last_end):
            cuts.append(tok.tag_start)
        yield End(base + min(cuts, default=len(text)))


def scan(text: str) -> Iterator[Tag | Text | End]:
    """Yield tags (with exact offsets into ``text``) and text runs, in document order, then the End."""
    norm, removed = _normalize_newlines(text)
    if not removed:
        yield from _tags(norm, 0, False)
        return

    def orig(pos: int) -> int:
        return pos + bisect.bisect_left(removed, pos)

    for item in _tags(norm, 0, False):
        if isinstance(item, Text):
            yield item
            continue
        if isinstance(item, End):
            yield End(orig(item.at))
            continue
        item.start, item.end = orig(item.start), orig(item.end)
        for attr in item.attrs.values():
            attr.span = (orig(attr.span[0]), orig(attr.span[1]))
            attr.lead = orig(attr.lead)
            if attr.value_span:
                attr.value_span = (orig(attr.value_span[0]), orig(attr.value_span[1]))
        yield item


def declared_charset(raw: bytes) -> str | None:
    """The Python codec a browser would read these bytes with, from a BOM or <meta charset>; None if neither."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    found = _inputstream.EncodingParser(raw[:PRESCAN_BYTES]).getEncoding()
    if found is None:
        return None
    codec = str(found.codec_info.name)
    # A page that declares UTF-16 or UTF-32 in ASCII is read as UTF-8 (HTML spec); such a codec cannot be right.
    return "utf-8" if codec.startswith(("utf-16", "utf-32")) else codec
