"""Rewriting HTML and plain text: find every trackable URL once, stamp it per recipient.

A document is scanned once into a ``Template``: the original text cut at the
exact ranges of the URL values we replace, with a ``Slot`` in each cut.  Every
other character of the original is kept as it was.  Rendering a template for
one recipient only joins strings with that recipient's identifiers, so a
campaign costs one scan, whatever the number of recipients.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import htmlscan
from .linktext import looks_like_address
from .urls import Target, browser_url, is_placeholder

CLICK, IMAGE = "click", "image"
OPT_OUT_PRESENT = ("data-pm-no-track", "mc:disable-tracking", "ses:no-track")
# Out of the flow, at the top left corner: the page's layout is exactly what it was
# (no line box, no broken margin collapsing).  Clients that drop `position` still
# get a 1x1 block, never a text line.
PIXEL_ATTRS = (
    'width="1" height="1" alt="" border="0" style="position:absolute;top:0;left:0;display:block;'
    'width:1px;height:1px;border:0;margin:0;padding:0;overflow:hidden"'
)

# Plain text: a URL runs to whitespace or an angle bracket or quote.
_TEXT_URL = re.compile(r"(?i)\bhttps?://[^\s<>\"]+")
# Punctuation that ends a sentence or a quotation, in any script, is the sentence's.
_TRAILING = ".,;:!?'*\"…‥»›”’」』】〉》。、，．！？；："
_PAIRS = {")": "(", "]": "[", "}": "{", "）": "（"}


@dataclass(frozen=True)
class Options:
    base: str  # the click domain, e.g. https://clicks.example.com
    track_clicks: bool = True
    track_opens: bool = True
    scam_protection: bool = True


class TooManyLinks(ValueError):
    """A message holds more distinct links than an identifier can number."""


MAX_LINKS = 0xFFFF  # a link index is two bytes of the identifier, and 0 is the pixel


@dataclass
class LinkTable:
    """The distinct targets of one message; a link's index is its place here, from 1."""

    links: list[tuple[str, str]] = field(default_factory=list)  # (kind, url)
    _index: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, kind: str, url: str) -> int:
        key = (kind, url)
        if key not in self._index:
            if len(self.links) >= MAX_LINKS:
                raise TooManyLinks(f"it holds more than {MAX_LINKS:,} distinct links")
            self.links.append(key)
            self._index[key] = len(self.links)
        return self._index[key]

    def forget_after(self, count: int) -> None:
        """Drop the links added after the first ``count`` (a part that is left as it was)."""
        for key in self.links[count:]:
            del self._index[key]
        del self.links[count:]


@dataclass(frozen=True)
class Slot:
    """Where one identifier goes: ``prefix + token + suffix`` replaces the cut."""

    idx: int
    prefix: str
    suffix: str


@dataclass
class Template:
    pieces: list[str | Slot]

    @property
    def changed(self) -> bool:
        return any(isinstance(p, Slot) for p in self.pieces)

    def render(self, token: Callable[[int], str]) -> str:
        """Join the pieces, asking ``token(idx)`` for each slot's identifier."""
        return "".join(p if isinstance(p, str) else p.prefix + token(p.idx) + p.suffix for p in self.pieces)


def _escape_attr(value: str, quote: str) -> str:
    value = value.replace("&", "&amp;")
    if quote == '"':
        return value.replace('"', "&quot;")
    if quote == "'":
        return value.replace("'", "&#39;")
    for ch, ref in (('"', "&quot;"), ("'", "&#39;"), ("<", "&lt;"), ("=", "&#61;"), (">", "&gt;"), ("`", "&#96;")):
        value = value.replace(ch, ref)
    return value


def _slot(idx: int, base: str, url: str, escape: Callable[[str], str]) -> Slot:
    return Slot(idx, escape(base + "/"), escape("/" + Target(url).visible))


def _trackable(raw: str, base: str) -> str | None:
    if is_placeholder(raw):
        return None
    url = browser_url(raw)
    if url is None or url.startswith(base + "/"):
        return None
    return url


def _splice(text: str, edits: list[tuple[int, int, str | Slot]]) -> Template:
    pieces: list[str | Slot] = []
    pos = 0
    for start, end, piece in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < pos:
            continue  # overlapping edits cannot happen with a sound scan; never splice twice
        pieces.append(text[pos:start])
        pieces.append(piece)
        pos = end
    pieces.append(text[pos:])
    return Template([p for p in pieces if p != ""])


def _drop_marker(tag: htmlscan.Tag, edits: list[tuple[int, int, str | Slot]]) -> bool:
    """Remove our opt-out marker from any tag; tell whether the tag carried it."""
    ours = tag.attrs.get("data-clicktrail")
    if ours is None or ours.value.strip().lower() != "off":
        return False
    edits.append((ours.lead, ours.span[1], ""))  # ours alone: never left in the output
    return True


def _opted_out(tag: htmlscan.Tag) -> bool:
    vendor = tag.attrs.get("clicktracking")
    if vendor is not None and vendor.value.strip().lower() == "off":
        return True
    return any(name in tag.attrs for name in OPT_OUT_PRESENT)


@dataclass
class _Pending:
    """A link whose visible text decides whether it is tracked: an <a>, or a VML shape, until its end tag."""

    name: str
    in_comment: bool
    attr: htmlscan.Attr
    url: str
    shown: list[str] = field(default_factory=list)  # all text: what Outlook shows
    outside: list[str] = field(default_factory=list)  # outside conditional comments: what other programs show

    def see(self, text: htmlscan.Text) -> None:
        self.shown.append(text.data)
        if not text.in_comment:
            self.outside.append(text.data)

    def deceptive(self) -> bool:
        """Tell whether the link's text reads as an address in any mail program that shows the link."""
        if looks_like_address("".join(self.shown)):
            return True
        return not self.in_comment and looks_like_address("".join(self.outside))


def html_template(text: str, links: LinkTable, opts: Options, pixel: bool = True) -> Template:
    """Scan HTML once; every tracked href/src value becomes a slot, and the pixel is added unless ``pixel`` is false."""
    edits: list[tuple[int, int, str | Slot]] = []
    body_end: int | None = None
    end = len(text)
    pending: list[_Pending] = []

    def track(attr: htmlscan.Attr, kind: str, url: str) -> None:
        assert attr.value_span is not None
        slot = _slot(links.add(kind, url), opts.base, url, lambda v: _escape_attr(v, attr.quote))
        edits.append((*attr.value_span, slot))

    def close(name: str, in_comment: bool) -> None:
        for link in [p for p in pending if p.name == name and p.in_comment == in_comment]:
            pending.remove(link)
            if not (opts.scam_protection and link.deceptive()):
                track(link.attr, CLICK, link.url)

    for item in htmlscan.scan(text):
        if isinstance(item, htmlscan.End):
            end = item.at
            continue
        if isinstance(item, htmlscan.Text):
            for link in pending:
                link.see(item)
            continue
        if item.kind == "end":
            close(item.name, item.in_comment)
            if item.name == "body" and not item.in_comment:
                body_end = item.start
            continue
        if item.kind != "start":
            continue
        ours = _drop_marker(item, edits)
        if item.name == "a":
            close("a", item.in_comment)  # an <a> ends the one before it
        is_link = item.name in ("a", "area") or item.name.startswith("v:")
        attr_name = "href" if is_link else "src" if item.name == "img" else None
        if attr_name is None or attr_name not in item.attrs:
            continue
        if (is_link and not opts.track_clicks) or (not is_link and not opts.track_opens):
            continue
        if ours or _opted_out(item):
            continue
        attr = item.attrs[attr_name]
        url = _trackable(attr.value, opts.base)
        if url is None or attr.value_span is None:
            continue
        if item.name == "a" or (item.name.startswith("v:") and not item.self_closing):
            pending.append(_Pending(item.name, item.in_comment, attr, url))  # decided at its end tag
        else:
            track(attr, CLICK if is_link else IMAGE, url)
    for link in list(pending):
        close(link.name, link.in_comment)
    if opts.track_opens and pixel:
        # Without </body>, at the end, or before a comment, raw-text element or tag the end cuts off:
        # inside one, the pixel would be text and never load.
        at = end if body_end is None else body_end
        edits.append((at, at, Slot(0, f'<img src="{_escape_attr(opts.base, chr(34))}/', f'/o.gif" {PIXEL_ATTRS}>')))
    return _splice(text, edits)


def _trim_url(url: str) -> str:
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last in _PAIRS and url.count(last) > url.count(_PAIRS[last]):
            url = url[:-1]
        else:
            break
    return url


def text_template(text: str, links: LinkTable, opts: Options) -> Template:
    """Scan plain text once; every bare or <bracketed> http(s) URL becomes a slot."""
    edits: list[tuple[int, int, str | Slot]] = []
    if opts.track_clicks:
        for m in _TEXT_URL.finditer(text):
            raw = _trim_url(m.group())
            url = _trackable(raw, opts.base)
            if url is None:
                continue
            idx = links.add(CLICK, url)
            edits.append((m.start(), m.start() + len(raw), _slot(idx, opts.base, url, str)))
    return _splice(text, edits)
