"""The path of a message: rewrite once, stamp per recipient, record the attempts.

message → click domain (``domains.domain_for``: the sender's own, else the
default) → rewrite (``mime.prepare``) → tokens (``Signer.mint``, bound to a
custom domain's host) → store (``Store.record_message``).  Nothing is handed
back before the store has the links, so every link we give out can be followed.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from .domains import domain_for, from_domain, host_of
from .errors import StoreUnavailable
from .logstore import Attempt, Store, attempt_key, new_id
from .mime import SWITCHES, Prepared, drop_headers, header_text, looks_like_mime, prepare
from .rewrite import Options
from .submission import Unparsable, dkim_signed, parse_addresses
from .tokens import Signer

log = logging.getLogger(__name__)


@dataclass
class Copy:
    """One recipient's copy of a message."""

    message: str  # the attempt id, as users see it
    recipient: str | None
    data: bytes


@dataclass
class Result:
    copies: list[Copy]
    prepared: Prepared
    warnings: list[str] = field(default_factory=list)
    click_domain: str = ""  # the base URL the links were rewritten onto


def stamp(prepared: Prepared, signer: Signer, attempt_id: int, host: str | None = None) -> bytes:
    """Render one copy: each link slot gets this attempt's identifier for that link (bound to ``host``)."""
    minted: dict[int, str] = {}

    def token(idx: int) -> str:
        t = minted.get(idx)
        if t is None:
            t = minted[idx] = signer.mint(attempt_id, idx, host)
        return t

    return prepared.render(token)


def track(
    store: Store,
    signer: Signer,
    opts: Options,
    raw: bytes,
    recipients: Sequence[str | None] = (None,),
    tag: str | None = None,
    *,
    login: str | None = None,
    api_key_name: str | None = None,
    accept: Callable[[Prepared], None] | None = None,
) -> Result:
    """Rewrite a message for each recipient and record one attempt per copy.

    ``opts.base`` is the default click domain; the sender's own (by API key,
    SMTP login or From domain) replaces it.
    """
    base = domain_for(store, from_domain(raw), login, api_key_name, default=opts.base)
    bound = None if base == opts.base else host_of(base)  # default-domain links stay unbound, as before
    prepared = prepare(raw, replace(opts, base=base))
    if accept is not None:
        accept(prepared)  # the caller may refuse the scanned message before anything is recorded
    for warning in prepared.warnings:
        log.warning("%s", warning)
    attempts, copies = [], []
    to = _bare(prepared.to)
    for recipient in recipients or (None,):
        aid = new_id()
        who = recipient if recipient is not None else to
        attempts.append(Attempt(aid, who, prepared.subject or None, prepared.message_id or None, tag,
                                prepared.track_clicks, prepared.track_opens))
        copies.append(Copy(attempt_key(aid), who, stamp(prepared, signer, aid, bound)))
    try:
        store.record_message(prepared.links.links, attempts)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"the message was not rewritten: the store cannot record it ({e})") from e
    return Result(copies, prepared, list(prepared.warnings), base)


def _bare(to: str) -> str | None:
    """The addresses of a To header without their names, as a copy sent to all of them is recorded."""
    try:
        found = [addr for _, addr in parse_addresses([to]) if addr]
    except Unparsable:
        found = []
    # Bare, so that a log filtered by recipient finds the copy; a To we cannot read is kept as it is.
    return ", ".join(found) or to.strip() or None


def for_rewrite(raw: bytes, rewrite_dkim: bool) -> bytes | None:
    """The message as it may be rewritten: itself, or without its DKIM-Signature when ``rewrite_dkim``;
    None when it is signed and may not be (a rewrite would break the signature: pass it on ``untouched``)."""
    if not (looks_like_mime(raw) and dkim_signed(raw)):
        return raw
    return drop_headers(raw, ("dkim-signature",)) if rewrite_dkim else None


def untouched(store: Store, raw: bytes, recipients: Sequence[str | None], tag: str | None = None) -> list[Copy]:
    """Record one attempt per recipient for a signed message passed on with nothing tracked.

    It goes byte for byte, but for our switch headers where the signature does
    not cover them (removing those would break it).
    """
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    subject, message_id = header_text(headers, "subject"), str(headers.get("message-id", "")).strip()
    attempts = [Attempt(new_id(), r, subject or None, message_id or None, tag, False, False) for r in recipients]
    store.record_message([], attempts)
    signed: set[str] = set()
    for sig in headers.get_all("dkim-signature", []):
        for tag_ in "".join(str(sig).split()).split(";"):
            if tag_.lower().startswith("h="):
                signed.update(name.lower() for name in tag_[2:].split(":"))
    names = tuple(n for n in SWITCHES if n not in signed)
    data = drop_headers(raw, names) if names else raw
    return [Copy(attempt_key(a.id), a.recipient, data) for a in attempts]
