"""Authenticated link identifiers: which message copy, which link, and proof we minted it.

An identifier is 18 bytes in URL-safe base64 (24 characters): a key id (1
byte), the attempt id (8 bytes), the link index (2 bytes; 0 is the open
pixel) and a 7-byte keyed BLAKE2b MAC over the rest (a PRF like HMAC, and
several times faster, which matters when a campaign stamps 60 links for
each of thousands of recipients).  The key id
names the secret that signed it, so links keep working after a new key is
added and the old one is kept for verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass

_BODY = struct.Struct(">BQH")
MAC_BYTES = 7
TOKEN_LENGTH = 24
PIXEL = 0


@dataclass(frozen=True)
class LinkRef:
    attempt_id: int
    link_idx: int


def key_id(secret: bytes) -> int:
    """A one-byte name for a secret, derived from it so no numbering is needed."""
    return hashlib.sha256(b"clicktrail key id\x00" + secret).digest()[0]


def _mac_key(secret: bytes) -> bytes:
    return hashlib.sha256(b"clicktrail link mac\x00" + secret).digest()


def _mac(key: bytes, body: bytes) -> bytes:
    return hashlib.blake2b(body, key=key, digest_size=MAC_BYTES).digest()


class Signer:
    """Mints identifiers with the current secret; accepts those of every known secret."""

    def __init__(self, current: bytes, older: tuple[bytes, ...] = ()) -> None:
        if not current:
            raise ValueError("the secret key is empty")
        self._current = (key_id(current), _mac_key(current))
        self._known: dict[int, list[bytes]] = {}
        for secret in (current, *older):
            self._known.setdefault(key_id(secret), []).append(_mac_key(secret))

    def mint(self, attempt_id: int, link_idx: int) -> str:
        kid, secret = self._current
        body = _BODY.pack(kid, attempt_id, link_idx)
        mac = _mac(secret, body)
        return base64.urlsafe_b64encode(body + mac).decode("ascii")

    def verify(self, token: str) -> LinkRef | None:
        """Return what the identifier points at, or None if we did not mint it."""
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None
        if len(raw) != _BODY.size + MAC_BYTES or base64.urlsafe_b64encode(raw).decode() != token:
            return None
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        kid, attempt_id, link_idx = _BODY.unpack(body)
        for secret in self._known.get(kid, ()):
            if hmac.compare_digest(_mac(secret, body), mac):
                return LinkRef(attempt_id, link_idx)
        return None
