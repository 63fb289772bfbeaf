"""MIME messages: find the text parts by byte range, rewrite them, splice them back.

The message is never re-generated.  We walk the multipart tree on the raw
bytes (boundaries per RFC 2046), cross-check the tree against the standard
``email`` parser, and for each ``text/html`` or ``text/plain`` part decode its
transfer encoding and charset, build a rewrite template, and remember the
byte range it replaces.  Headers, boundaries, attachments and attached
``message/rfc822`` parts stay byte-identical.  A message we cannot read
exactly is passed through unchanged, with a warning: never half rewritten.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.header
import email.parser
import email.utils
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32

from . import htmlscan
from .config import yes_no
from .errors import BadInput
from .rewrite import LinkTable, Options, Template, TooManyLinks, html_template, text_template
from .tokens import TOKEN_LENGTH

SWITCHES = ("x-clicktrail-trackclicks", "x-clicktrail-trackopens")
MAX_LINE = 998  # octets per line, without the line break (RFC 5322 2.1.1)
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_TAG = re.compile(r"<[A-Za-z!/?]")
# Header fields of messages (RFC 5322, 2045, 5321 trace fields, common extensions); any X- field too.
_MESSAGE_FIELDS = frozenset(
    b"from to cc bcc subject date sender reply-to message-id in-reply-to references mime-version received "
    b"return-path delivered-to envelope-to dkim-signature domainkey-signature authentication-results "
    b"received-spf user-agent importance priority thread-topic thread-index keywords comments errors-to "
    b"precedence organization feedback-id".split())
_MESSAGE_PREFIXES = (b"x-", b"content-", b"list-", b"resent-", b"arc-", b"auto-")
MAX_HEADER_LINES = 1000
_B64_BODY = re.compile(rb"^[A-Za-z0-9+/=\s]*$")
# A text part larger than this passes through unchanged: real mail bodies are
# far smaller (mail programs clip HTML at ~100 KB), and scanning takes ~0.3 s
# per MB at worst, so a 50 MB part would hold the caller for minutes.
MAX_TEXT_PART = 5 * 1024 * 1024
# Real mail nests a few levels (mixed > alternative > related); far deeper is a
# message made to exhaust the stack, and the email package itself gives up near 1,000.
MAX_DEPTH = 100


class Unreadable(Exception):
    """The message cannot be read exactly; it must pass through unchanged."""


class BadSwitch(BadInput):
    """A tracking switch header holds something other than yes or no."""


@dataclass
class _Part:
    start: int  # the body's byte range in the raw message
    end: int
    encode: Callable[[str], bytes]
    template: Template
    # The encoded part cut where identifier characters go (see _encoded_layout): static
    # bytes around (link index, first char, end char) cuts.  Worked out at the second
    # copy, so a one-recipient message never pays for it; no cuts when the encoding cannot.
    layout: Layout | None = None
    token_length: int = 0
    renders: int = 0

    def stamp(self, token: Callable[[int], str]) -> bytes:
        """This part, encoded, with ``token(idx)`` identifiers."""
        if self.layout is not None:
            fast = self._from_layout(token) if self.layout[1] else None
            if fast is not None:
                return fast
        elif self.renders == 1:
            self.layout = _encoded_layout(self, token)
        self.renders += 1
        return self.encode(self.template.render(token))

    def _from_layout(self, token: Callable[[int], str]) -> bytes | None:
        assert self.layout
        statics, cuts = self.layout
        n = self.token_length
        order = list(dict.fromkeys(idx for idx, _, _ in cuts))
        texts = [token(idx) for idx in order]
        joined = "".join(texts)
        if set(map(len, texts)) != {n} or not _TOKEN_CHARS.match(joined):
            return None  # not identifiers the layout was made for: encode in full
        data = joined.encode("ascii")
        at = {idx: k * n for k, idx in enumerate(order)}
        out: list[bytes] = [b""] * (2 * len(cuts) + 1)
        out[0::2] = statics
        out[1::2] = [data[at[idx] + i:at[idx] + j] for idx, i, j in cuts]
        return b"".join(out)


Layout = tuple[list[bytes], list[tuple[int, int, int]]]
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+\Z")  # URL-safe base64: literal in quoted-printable


def _differences(a: bytes, b: bytes, step: int = 64) -> list[int]:
    found: list[int] = []
    for i in range(0, len(a), step):
        if a[i:i + step] != b[i:i + step]:
            found += [j for j in range(i, min(i + step, len(a))) if a[j] != b[j]]
    return found


def _encoded_layout(part: _Part, token: Callable[[int], str]) -> Layout:
    """Cut the encoded part where identifier characters land, so a copy is a join, not an encode.

    Identifiers all have the same length and use only characters that quoted-printable
    and 8bit keep as one byte in place, so every copy has the same layout: encode
    twice with different dummy identifiers and the bytes that differ are the
    identifier characters.  Checked against a full encode with real identifiers;
    an encoding that does not keep them in place (base64) gets an empty layout and is encoded in full.
    """
    slots = [p for p in part.template.pieces if not isinstance(p, str)]
    n = len(token(slots[0].idx)) if slots else 0
    if not n or not all(len(token(s.idx)) == n and _TOKEN_CHARS.match(token(s.idx)) for s in slots):
        return ([], [])
    a = part.encode(part.template.render(lambda _: "A" * n))
    b = part.encode(part.template.render(lambda _: "B" * n))
    places = _differences(a, b) if len(a) == len(b) else []
    if len(places) != n * len(slots):
        return ([], [])
    statics: list[bytes] = []
    cuts: list[tuple[int, int, int]] = []
    pos = 0
    for k, slot in enumerate(slots):
        mine = places[k * n:(k + 1) * n]
        j = 0
        while j < n:  # one run per stretch of the identifier not broken by a soft line break
            run = 1
            while j + run < n and mine[j + run] == mine[j] + run:
                run += 1
            statics.append(a[pos:mine[j]])
            cuts.append((slot.idx, j, j + run))
            pos = mine[j] + run
            j += run
    statics.append(a[pos:])
    layout: Layout = (statics, cuts)
    part.layout, part.token_length = layout, n
    if part._from_layout(token) != part.encode(part.template.render(token)):
        return ([], [])
    return layout


@dataclass
class Prepared:
    """A message scanned once, ready to be stamped for each recipient."""

    raw: bytes
    links: LinkTable
    parts: list[_Part] = field(default_factory=list)
    drop: list[tuple[int, int]] = field(default_factory=list)  # header lines we remove
    subject: str = ""
    message_id: str = ""
    to: str = ""
    track_clicks: bool = True
    track_opens: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.drop) or any(p.template.changed for p in self.parts)

    def render(self, token: Callable[[int], str]) -> bytes:
        """The message as one recipient receives it, with ``token(idx)`` identifiers."""
        cuts = sorted(
            [(s, e, b"") for s, e in self.drop]
            + [(p.start, p.end, p.stamp(token)) for p in self.parts if p.template.changed]
        )
        out, pos = [], 0
        for start, end, data in cuts:
            out += [self.raw[pos:start], data]
            pos = end
        out.append(self.raw[pos:])
        return b"".join(out)


def looks_like_mime(raw: bytes) -> bool:
    """True when the input starts with header fields, one of them a message's, rather than markup or text."""
    # "Hi:" or "Note: see below" opening an HTML fragment is a well-formed header line too: only
    # a field that messages carry says it is one, and it must come before anything but header lines.
    pos = len(raw) - len(raw.lstrip(b"\r\n"))
    for i in range(MAX_HEADER_LINES):
        nl = raw.find(b"\n", pos)
        line = raw[pos:] if nl < 0 else raw[pos:nl]
        pos = len(raw) if nl < 0 else nl + 1
        if i == 0 and line.startswith(b"From "):
            continue  # an mbox separator line
        if line in (b"", b"\r"):
            return False  # the end of the headers, or of the input
        if i and line[:1] in (b" ", b"\t"):
            continue  # a folded continuation
        if not _HEADER_LINE.match(line):
            return False
        name = line.split(b":", 1)[0].rstrip(b" \t").lower()
        if name in _MESSAGE_FIELDS or name.startswith(_MESSAGE_PREFIXES):
            return True
    return False


def switch(value: str | None, name: str, default: bool) -> bool:
    """Read a yes/no switch; None means the default."""
    if value is None:
        return default
    try:
        return yes_no(value)
    except ValueError as e:
        raise BadSwitch(f"{name} must be yes or no, not {value.strip()!r}", field=name) from e


def _message_switch(msg: Message, header: str, name: str, default: bool) -> bool:
    """A message's switch header; given twice, both must say the same."""
    values = {switch(str(v), name, default) for v in msg.get_all(header, [])}
    if len(values) > 1:
        raise BadSwitch(f"{name} is given twice, once yes and once no", field=name)
    return values.pop() if values else default


def _header_end(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """Return (end of headers, start of body) for the entity at raw[start:end]."""
    pos = start
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        line = raw[pos:line_end]
        if line in (b"\n", b"\r\n"):
            return pos, line_end
        if not (_HEADER_LINE.match(line) or line[:1] in (b" ", b"\t")):
            raise Unreadable("a header line is malformed or the blank line after the headers is missing")
        pos = line_end
    return end, end  # headers only, no body


def _delimiters(raw: bytes, start: int, end: int, boundary: str) -> Iterator[re.Match[bytes]]:
    b = re.escape(boundary.encode("ascii", "surrogateescape"))
    pattern = re.compile(rb"(?:\r?\n|^)--" + b + rb"(--)?[ \t]*(?=\r?\n|$)", re.M)
    return pattern.finditer(raw, start, end)


def _decoder(headers: Message) -> Callable[[bytes], bytes]:
    cte = str(headers.get("content-transfer-encoding", "7bit")).strip().lower()
    if cte in ("7bit", "8bit", "binary", ""):
        return lambda body: body
    if cte == "quoted-printable":
        return binascii.a2b_qp
    if cte == "base64":
        def b64(body: bytes) -> bytes:
            if not _B64_BODY.match(body):
                raise Unreadable("a base64 part holds characters outside base64")
            try:
                return binascii.a2b_base64(body, strict_mode=False)
            except binascii.Error as e:
                raise Unreadable(f"a base64 part does not decode: {e}") from e
        return b64
    raise Unreadable(f"unknown Content-Transfer-Encoding {cte!r}")


_LINE = re.compile(rb"([^\n]*?)(\r?\n|$)")


def _qp_encode(data: bytes, newline: bytes) -> bytes:
    """Quoted-printable that decodes to exactly ``data``: each line break is kept as it was.

    ``binascii.b2a_qp`` turns every line break into the first one it sees, so a part
    mixing CRLF and LF would not decode to the same text; lone CRs become ``=0D``.
    """
    out = []
    for m in _LINE.finditer(data):
        line, end = m.groups()
        if not line and not end:
            break
        # binary mode: a CR inside the line is encoded; the only LFs in the result are soft breaks
        out.append(binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=" + newline) + end)
    return b"".join(out)


def _encoder(headers: Message, body: bytes, charset: str) -> Callable[[str], bytes]:
    cte = str(headers.get("content-transfer-encoding", "7bit")).strip().lower()
    newline = b"\r\n" if b"\r\n" in body else b"\n"

    def to_bytes(text: str) -> bytes:
        return text.encode(charset, "surrogateescape")

    if cte == "quoted-printable":
        return lambda text: _qp_encode(to_bytes(text), newline)
    if cte == "base64":
        first = body.strip().split(b"\n", 1)[0].rstrip(b"\r")
        width = max(4, len(first) - len(first) % 4) if b"\n" in body.strip() else 76
        trailing = body[len(body.rstrip()) :]

        def b64(text: str) -> bytes:
            data = binascii.b2a_base64(to_bytes(text), newline=False)
            lines = [data[i : i + width] for i in range(0, len(data), width)]
            return newline.join(lines) + trailing
        return b64
    return to_bytes


@dataclass
class _Text:
    """A text part found by the walk, decoded, waiting to be scanned."""

    headers: Message
    ctype: str
    start: int
    end: int
    text: str
    codec: str


class _Walker:
    """Walk the MIME tree on the raw bytes; then scan its text parts, the pixel in the one displayed first."""

    def __init__(self, raw: bytes, links: LinkTable, opts: Options) -> None:
        self.raw, self.links, self.opts = raw, links, opts
        self.texts: list[_Text] = []
        self.parts: list[_Part] = []
        self.types: list[str] = []
        self.warnings: list[str] = []

    def entity(self, start: int, end: int, default_type: str = "text/plain", depth: int = 0) -> int | None:
        """Walk one entity; return the index (in ``texts``) of the first HTML part a reader sees of it."""
        if depth > MAX_DEPTH:
            raise Unreadable(f"the MIME parts are nested more than {MAX_DEPTH} deep")
        header_end, body_start = _header_end(self.raw, start, end)
        headers = email.parser.BytesHeaderParser(policy=compat32).parsebytes(self.raw[start:header_end])
        if default_type != "text/plain" and "content-type" not in headers:
            headers.set_default_type(default_type)
        ctype = headers.get_content_type()
        self.types.append(ctype)
        if headers.get_content_maintype() == "multipart":
            return self.multipart(headers, body_start, end, depth)
        if ctype in ("text/html", "text/plain") and not _is_attachment(headers):
            self.text(headers, ctype, body_start, end)
            return len(self.texts) - 1 if ctype == "text/html" else None
        return None

    def multipart(self, headers: Message, start: int, end: int, depth: int) -> int | None:
        boundary = headers.get_boundary()
        if not boundary:
            raise Unreadable("a multipart part has no boundary")
        child_type = "message/rfc822" if headers.get_content_subtype() == "digest" else "text/plain"
        part_start = None
        closed = False
        shown: list[int] = []
        for m in _delimiters(self.raw, start, end, boundary):
            if part_start is not None:
                html = self.entity(part_start, m.start(), child_type, depth + 1)
                if html is not None:
                    shown.append(html)
            if m.group(1):
                closed = True
                break
            nl = self.raw.find(b"\n", m.end(), end)
            part_start = end if nl < 0 else nl + 1
        if part_start is None or not closed:
            raise Unreadable(f"multipart boundary {boundary!r} is not opened and closed properly")
        if not shown:
            return None
        # Of alternatives a mail program shows one, the HTML one (the last, as senders order them);
        # of mixed or related parts it shows all in turn, so the first is seen first.
        return shown[-1] if headers.get_content_subtype() == "alternative" else shown[0]

    def text(self, headers: Message, ctype: str, start: int, end: int) -> None:
        body = self.raw[start:end]
        data = _decoder(headers)(body)
        if len(data) > MAX_TEXT_PART:
            raise Unreadable(f"a {ctype} part of {len(data):,} bytes is over the {MAX_TEXT_PART:,} byte limit")
        charset = headers.get_content_charset()
        if charset is None and ctype == "text/html":
            charset = _round_trips(data, htmlscan.declared_charset(data))  # what the reader's client goes by
        charset = charset or "us-ascii"
        try:
            codec = codecs.lookup(charset).name
        except LookupError as e:
            raise Unreadable(f"unknown charset {charset!r}") from e
        text = data.decode(codec, "surrogateescape")
        if text.encode(codec, "surrogateescape") != data:
            raise Unreadable(f"the {charset} text does not re-encode to the same bytes")
        self.texts.append(_Text(headers, ctype, start, end, text, codec))

    def scan(self, pixel: int | None) -> None:
        """Build each text part's template, in order; only part ``pixel`` gets the open pixel (one view, one open)."""
        for i, part in enumerate(self.texts):
            self.scan_part(part, pixel=i == pixel)

    def scan_part(self, part: _Text, pixel: bool) -> None:
        headers, ctype, start, end, text = part.headers, part.ctype, part.start, part.end, part.text
        body = self.raw[start:end]
        known = len(self.links.links)
        if ctype == "text/html":
            template = html_template(text, self.links, self.opts, pixel=pixel)
        else:
            template = text_template(text, self.links, self.opts)
        encode = _encoder(headers, body, part.codec)
        longest = _longest_line(encode(template.render(lambda idx: "A" * TOKEN_LENGTH))) if _unwrapped(headers) else 0
        if longest > MAX_LINE >= _longest_line(body):
            # We would make the part break RFC 5322, and the first relay that enforces it would
            # break the line somewhere in a link: leave this part as it was.
            self.links.forget_after(known)
            self.warnings.append(f"a {ctype} part was left untracked: rewritten, a line would pass {MAX_LINE} octets")
            return
        self.parts.append(_Part(start, end, encode, template))


def _unwrapped(headers: Message) -> bool:
    """True when the body goes out with its own line breaks (7bit, 8bit), not re-wrapped (QP, base64)."""
    return str(headers.get("content-transfer-encoding", "7bit")).strip().lower() in ("7bit", "8bit", "")


def _longest_line(data: bytes) -> int:
    return max((len(line.rstrip(b"\r")) for line in data.split(b"\n")), default=0)


def _round_trips(data: bytes, codec: str | None) -> str | None:
    """The codec if it reads and writes back these exact bytes, else None."""
    if codec is None:
        return None
    try:
        return codec if data.decode(codec, "surrogateescape").encode(codec, "surrogateescape") == data else None
    except (UnicodeError, LookupError):
        return None


def _is_attachment(headers: Message) -> bool:
    return str(headers.get("content-disposition", "")).strip().lower().startswith("attachment")


def _children(msg: Message) -> list[Message]:
    """Sub-parts of a multipart; an attached message/rfc822 is a leaf to us."""
    if msg.get_content_maintype() == "multipart" and msg.is_multipart():
        return [sub for sub in msg.get_payload() if isinstance(sub, Message)]
    return []


def _email_types(msg: Message) -> Iterator[str]:
    yield msg.get_content_type()
    for sub in _children(msg):
        yield from _email_types(sub)


def _defects(msg: Message) -> list[str]:
    found = [type(d).__name__ for d in msg.defects]
    for sub in _children(msg):
        found += _defects(sub)
    return found


def header_text(msg: Message, name: str) -> str:
    """A header's value with encoded words decoded; "" when absent."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return str(value)


def _switch_lines(raw: bytes, header_end: int, names: tuple[str, ...] = SWITCHES) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < header_end:
        nl = raw.find(b"\n", pos, header_end)
        line_end = header_end if nl < 0 else nl + 1
        line = raw[pos:line_end]
        if line[:1] in (b" ", b"\t") and spans and spans[-1][1] == pos:
            spans[-1] = (spans[-1][0], line_end)  # a folded continuation of our header
        elif line.split(b":", 1)[0].strip().lower().decode("latin-1") in names:
            spans.append((pos, line_end))
        pos = line_end
    return spans


def drop_headers(raw: bytes, names: tuple[str, ...]) -> bytes:
    """The message without its top-level header fields of these lower-case names; unreadable ones unchanged."""
    try:
        header_end, _ = _header_end(raw, 0, len(raw))
    except Unreadable:
        return raw
    out, pos = [], 0
    for start, end in _switch_lines(raw, header_end, names):
        out.append(raw[pos:start])
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


def prepare_mime(raw: bytes, opts: Options) -> Prepared:
    """Scan a whole message once. Unreadable messages come back unchanged, with a warning."""
    links = LinkTable()
    # The top-level headers alone: the whole parse below recurses once per nesting level and can give up.
    head = email.parser.BytesHeaderParser(policy=compat32).parsebytes(raw)
    opts = Options(
        opts.base,
        track_clicks=_message_switch(head, SWITCHES[0], "X-Clicktrail-Trackclicks", opts.track_clicks),
        track_opens=_message_switch(head, SWITCHES[1], "X-Clicktrail-Trackopens", opts.track_opens),
        scam_protection=opts.scam_protection,
    )
    prepared = Prepared(raw, links, track_clicks=opts.track_clicks, track_opens=opts.track_opens)
    prepared.subject = header_text(head, "subject")
    prepared.message_id = str(head.get("message-id", "")).strip()
    prepared.to = header_text(head, "to")
    try:
        header_end, _ = _header_end(raw, 0, len(raw))
        walker = _Walker(raw, links, opts)
        pixel = walker.entity(0, len(raw))
        try:
            msg = email.message_from_bytes(raw, policy=compat32)
        except RecursionError as e:
            raise Unreadable("the email parser gives up: its parts are nested too deeply") from e
        defects = _defects(msg)
        if defects:
            raise Unreadable("the email parser reports " + ", ".join(sorted(set(defects))))
        if walker.types != list(_email_types(msg)):
            raise Unreadable("the MIME tree is ambiguous")
        walker.scan(pixel)
    except (Unreadable, UnicodeError, ValueError) as e:
        prepared.links = LinkTable()
        prepared.warnings.append(f"message passed through unchanged: {e}")
        return prepared
    prepared.parts = walker.parts
    prepared.warnings += walker.warnings
    prepared.drop = _switch_lines(raw, header_end)
    return prepared


def _not_html(text: str, raw: bytes) -> str | None:
    """Why this input is not HTML we should touch, or None when it is."""
    if not raw.strip():
        return "the input is empty"
    if b"\x00" in raw:
        return "the input holds NUL bytes: it is binary, not HTML"
    undecodable = sum(1 for ch in text if "\udc80" <= ch <= "\udcff")
    if undecodable > len(raw) // 100:
        return f"{undecodable:,} bytes do not decode in the page's charset: it is binary, not HTML"
    if not _TAG.search(text):
        return "the input holds no HTML tag"
    return None


def prepare_html(raw: bytes, opts: Options, charset: str | None = None) -> Prepared:
    """Scan bare HTML (no headers) once, in its declared charset (<meta charset>), else UTF-8."""
    charset = charset or _round_trips(raw, htmlscan.declared_charset(raw)) or "utf-8"
    links = LinkTable()
    unchanged = Prepared(raw, links, track_clicks=opts.track_clicks, track_opens=opts.track_opens)
    if len(raw) > MAX_TEXT_PART:
        unchanged.warnings.append(
            f"message passed through unchanged: {len(raw):,} bytes of HTML is over the {MAX_TEXT_PART:,} byte limit")
        return unchanged
    text = raw.decode(charset, "surrogateescape")
    why = _not_html(text, raw)
    if why is None:
        try:
            template = html_template(text, links, opts)
        except TooManyLinks as e:
            why = str(e)
    if why is not None:
        unchanged.links = LinkTable()
        unchanged.warnings.append(f"message passed through unchanged: {why}")
        return unchanged
    unchanged.parts = [_Part(0, len(raw), lambda t: t.encode(charset, "surrogateescape"), template)]
    return unchanged


def prepare(raw: bytes, opts: Options) -> Prepared:
    """Scan a MIME message or bare HTML, whichever the input is."""
    return prepare_mime(raw, opts) if looks_like_mime(raw) else prepare_html(raw, opts)
