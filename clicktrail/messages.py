"""The path of a message: rewrite once, stamp per recipient, record the attempts.

message → rewrite (``mime.prepare``) → tokens (``Signer.mint``) → store
(``Store.record_message``).  Nothing is handed back before the store has
the links, so every link we give out can be followed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

from .logstore import Attempt, Store, attempt_key, new_id
from .mime import Prepared, prepare
from .rewrite import Options
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


def stamp(prepared: Prepared, signer: Signer, attempt_id: int) -> bytes:
    """Render one copy: each link slot gets this attempt's identifier for that link."""
    minted: dict[int, str] = {}

    def token(idx: int) -> str:
        t = minted.get(idx)
        if t is None:
            t = minted[idx] = signer.mint(attempt_id, idx)
        return t

    return prepared.render(token)


def track(
    store: Store,
    signer: Signer,
    opts: Options,
    raw: bytes,
    recipients: Sequence[str | None] = (None,),
    tag: str | None = None,
) -> Result:
    """Rewrite a message for each recipient and record one attempt per copy."""
    prepared = prepare(raw, opts)
    for warning in prepared.warnings:
        log.warning("%s", warning)
    attempts, copies = [], []
    for recipient in recipients or (None,):
        aid = new_id()
        who = recipient if recipient is not None else (prepared.to or None)
        attempts.append(Attempt(aid, who, prepared.subject or None, prepared.message_id or None, tag,
                                prepared.track_clicks, prepared.track_opens))
        copies.append(Copy(attempt_key(aid), who, stamp(prepared, signer, aid)))
    store.record_message(prepared.links.links, attempts)
    return Result(copies, prepared, list(prepared.warnings))
