"""A message submitted over the API: its fields checked, and a MIME message built from html/text.

The fields come as JSON or as form fields (urlencoded or multipart, where a
field may also be an uploaded file).  Everything wrong is reported as a
``BadInput`` naming the field, before anything is rewritten or recorded.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Any

from .errors import BadInput, shown
from .mime import looks_like_mime

CONTENT = ("mime", "html", "text")
TEXTS = ("mime", "html", "text", "subject", "from", "tag")
SWITCHES = ("trackclicks", "trackopens", "send")
FIELDS = (*TEXTS, "recipients", *SWITCHES)
MAX_RECIPIENTS = 1000
MAX_TAG = 200
FORM_TRUE = ("yes", "true", "1")
FORM_FALSE = ("no", "false", "0")

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Submission:
    """What POST /api/messages asked for."""

    raw: bytes  # the message: as given in ``mime``, or built from html/text
    recipients: list[str] = field(default_factory=list)
    tag: str | None = None
    track_clicks: bool | None = None  # None: the configured default
    track_opens: bool | None = None
    built: bool = False  # True when we built the message from html/text
    send: bool = False  # deliver the copies upstream too (delivery.deliver)
    sender: str | None = None  # the address of the from field, when we built the message
    content: tuple[str, ...] = ("mime",)  # the fields the message came from, to name in errors about it


def valid_address(addr: str) -> bool:
    """True for a plain ASCII address ``local@domain``."""
    local, at, domain = addr.rpartition("@")
    return (bool(at) and 0 < len(local) <= 64 and len(domain) <= 253 and bool(_LOCAL.match(local))
            and bool(_DOMAIN.match(domain)))


def valid_tag(tag: str) -> bool:
    """True for a tag of 1 to MAX_TAG characters of real text, without control characters."""
    try:
        tag.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return bool(tag.strip()) and len(tag) <= MAX_TAG and not _CONTROL.search(tag)


class Unparsable(ValueError):
    """An address list nested too deeply for the standard parser."""


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """Split address field values into (name, address) pairs; Unparsable when the parser cannot."""
    try:
        return email.utils.getaddresses(values)
    except RecursionError as e:
        # The parser recurses once per "(" of a comment: a few hundred of them exhaust the stack.
        raise Unparsable("its comments (parentheses) are nested too deeply to read") from e


def _addresses(name: str, value: str) -> list[tuple[str, str]]:
    """Parse one field value holding one address or several, comma-separated."""
    if _CONTROL.search(value):
        raise BadInput(f"{name} holds a control character", field=name)
    try:
        found = parse_addresses([value])
    except Unparsable as e:
        raise BadInput(f"{name} is not a list of email addresses: {e}", field=name) from e
    if not found or any(not valid_address(addr) for _, addr in found):
        raise BadInput(f"{name}: {shown(value.strip())} is not a valid email address (or list of them)", field=name)
    return found


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{name} is not valid Unicode text", field=name) from e
    return value


def _form_switch(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in FORM_TRUE:
        return True
    if v in FORM_FALSE:
        return False
    raise BadInput(f"{name} must be one of yes, no, true, false, 1, 0 (not {shown(value.strip(), 40)})", field=name)


def from_json(body: Any, domain: str) -> Submission:
    """Read the fields of a JSON object."""
    if not isinstance(body, dict):
        raise BadInput("the JSON body must be an object")
    for name in body:
        if name not in FIELDS:
            raise BadInput(f"unknown field {shown(name)}", field=name)
    values: dict[str, Any] = {n: _text(n, body[n]) for n in TEXTS if body.get(n) is not None}
    for n in SWITCHES:
        if body.get(n) is not None:
            if not isinstance(body[n], bool):
                raise BadInput(f"{n} must be true or false", field=n)
            values[n] = body[n]
    recipients = body.get("recipients")
    if recipients is None:
        recipients = []
    elif isinstance(recipients, str):
        recipients = [recipients]
    elif not isinstance(recipients, list):
        raise BadInput("recipients must be a string or an array of strings", field="recipients")
    if len(recipients) > MAX_RECIPIENTS:  # each holds one address at least: no need to read them
        raise BadInput(f"at most {MAX_RECIPIENTS} recipients per request", field="recipients")
    values["recipients"] = [_text("recipients", r) for r in recipients]
    return _build(values, domain)


def from_form(items: Iterable[tuple[str, str | bytes]], domain: str) -> Submission:
    """Read form fields (a value may be an uploaded file's bytes); ``recipients`` may repeat."""
    values: dict[str, Any] = {"recipients": []}
    for name, value in items:
        if name not in FIELDS:
            raise BadInput(f"unknown field {shown(name)}", field=name)
        if isinstance(value, bytes) and name != "mime":
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadInput(f"{name} is not UTF-8 text", field=name) from e
        if name == "recipients":
            values["recipients"].append(_text(name, value))
            if len(values["recipients"]) > MAX_RECIPIENTS:  # each holds one address at least: stop reading here
                raise BadInput(f"at most {MAX_RECIPIENTS} recipients per request", field="recipients")
        elif name in values:
            raise BadInput(f"{name} is given more than once", field=name)
        elif name in SWITCHES:
            values[name] = _form_switch(name, _text(name, value))
        else:
            values[name] = value if isinstance(value, bytes) else _text(name, value)
    return _build(values, domain)


def _build(values: dict[str, Any], domain: str) -> Submission:
    recipients: list[str] = []
    for value in values["recipients"]:
        recipients += [addr for _, addr in _addresses("recipients", value)]
    if len(recipients) > MAX_RECIPIENTS:
        raise BadInput(f"at most {MAX_RECIPIENTS} recipients per request", field="recipients")
    tag = values.get("tag")
    if tag is not None and not valid_tag(tag):
        raise BadInput(f"tag must be 1 to {MAX_TAG} characters without control characters", field="tag")
    sub = Submission(b"", recipients, tag, values.get("trackclicks"), values.get("trackopens"),
                     send=bool(values.get("send")))
    mime = values.get("mime")
    if mime is not None and mime != "":
        for other in ("html", "text", "subject", "from"):
            if values.get(other) is not None:
                raise BadInput(f"{other} cannot be combined with mime: the message carries its own", field=other)
        sub.raw = mime if isinstance(mime, bytes) else mime.encode("utf-8")
        if looks_like_mime(sub.raw):
            headers = _headers(sub.raw)
            _header_addresses(headers, "From")  # refused here if unreadable, not later when its domain is looked up
            if not recipients:
                sub.recipients = _to(headers)
        return sub
    html, text = values.get("html") or None, values.get("text") or None
    if html is None and text is None:
        given = [n for n in CONTENT if n in values]
        raise BadInput(f"no content: {given[0] + ' is empty; ' if given else ''}give mime, or html and/or text",
                       field=given[0] if given else "html")
    sub.raw, sub.built = compose(html, text, values.get("subject"), values.get("from"), domain), True
    sub.content = tuple(n for n, v in (("text", text), ("html", html)) if v is not None)
    if values.get("from") is not None:
        sub.sender = _addresses("from", values["from"])[0][1]
    return sub


def envelope(sub: Submission) -> tuple[str, list[str]]:
    """Sender and recipients for delivering a submission: from field or From header; recipients or To."""
    if sub.built:
        if sub.sender is None:
            raise BadInput("send needs a sender: give from (the envelope sender and From address)", field="from")
        sender = sub.sender
    else:
        sender = _one_header_address(sub.raw, "From", "mime")
    recipients = list(dict.fromkeys(sub.recipients))  # a recipient named twice still gets one copy
    if not recipients:
        raise BadInput("send needs recipients (or a message with a To header)", field="recipients")
    return sender, recipients


def dkim_signed(raw: bytes) -> bool:
    """True when a message carries a DKIM-Signature header."""
    return "dkim-signature" in _headers(raw)


def _headers(raw: bytes) -> Message:
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)


def _header_addresses(headers: Message, name: str) -> list[str]:
    values = [str(v) for v in headers.get_all(name, [])]
    try:
        return [addr for _, addr in parse_addresses(values) if addr]
    except Unparsable as e:
        raise BadInput(f"the {name} header of mime cannot be read: {e}", field="mime") from e


def _to(headers: Message) -> list[str]:
    """Each address of the message's To, once: the recipients when none are given."""
    to = list(dict.fromkeys(_header_addresses(headers, "To")))
    for addr in to:
        if not valid_address(addr):
            raise BadInput(f"the To header of mime holds {shown(addr)}, which is not a valid email address: "
                           "give recipients", field="recipients")
    if len(to) > MAX_RECIPIENTS:
        raise BadInput(f"at most {MAX_RECIPIENTS} recipients per request (the To header of mime has "
                       f"{len(to):,})", field="recipients")
    return to


def _one_header_address(raw: bytes, name: str, field: str) -> str:
    found = _header_addresses(_headers(raw), name)
    if len(found) != 1 or not valid_address(found[0]):
        raise BadInput(f"send needs one valid address in the {name} header of {field} (the envelope sender); "
                       f"found {shown(', '.join(found)) if found else 'none'}", field=field)
    return found[0]


def compose(html: str | None, text: str | None, subject: str | None, sender: str | None, domain: str) -> bytes:
    """Build a MIME message: text and html as alternatives, or whichever one is given."""
    msg = EmailMessage(policy=email.policy.SMTP)
    if subject is not None:
        if _CONTROL.search(subject):
            raise BadInput("subject holds a control character", field="subject")
        msg["Subject"] = subject
    if sender is not None:
        found = _addresses("from", sender)
        if len(found) != 1:
            raise BadInput("from is one address", field="from")
        msg["From"] = email.utils.formataddr(found[0])
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    if text is not None:
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    return msg.as_bytes()
