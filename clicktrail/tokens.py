"""Authenticated link identifiers: which message copy, which link, and proof we minted it.

An identifier is 18 bytes in URL-safe base64 (24 characters): a key id (1
byte), the attempt id (8 bytes), the link index (2 bytes; 0 is the open
pixel) and a 7-byte keyed BLAKE2b MAC over the rest (a PRF like HMAC, and
several times faster, which matters when a campaign stamps 60 links for
each of thousands of recipients).  The key id
names the secret that signed it, so links keep working after a new key is
added and the old one is kept for verification.

A link minted for a custom click domain has that domain's host mixed into its
MAC (``mint(..., host=...)``): it verifies only when presented on that host.
Links of the default click domain, and every link minted before hosts were
bound, carry no host and are accepted on the tracker's own hosts only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

_BODY = struct.Struct(">BQH")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
MAC_BYTES = 7
TOKEN_LENGTH = 24
PIXEL = 0


@dataclass(frozen=True)
class LinkRef:
    attempt_id: int
    link_idx: int
    host: str | None = None  # the click domain host the MAC binds, None for an unbound link


def key_id(secret: bytes) -> int:
    """A one-byte name for a secret, derived from it so no numbering is needed."""
    return hashlib.sha256(b"clicktrail key id\x00" + secret).digest()[0]


def _mac_key(secret: bytes) -> bytes:
    return hashlib.sha256(b"clicktrail link mac\x00" + secret).digest()


def _mac(key: bytes, body: bytes) -> bytes:
    return hashlib.blake2b(body, key=key, digest_size=MAC_BYTES).digest()


def _host_mac(key: bytes, body: bytes, host: str) -> bytes:
    # A separate personalization keeps bound and unbound MACs apart.
    return hashlib.blake2b(body + host.encode("utf-8"), key=key, digest_size=MAC_BYTES,
                           person=b"clicktrail host").digest()


class Signer:
    """Mints identifiers with the current secret; accepts those of every known secret."""

    def __init__(self, current: bytes, older: tuple[bytes, ...] = ()) -> None:
        if not current:
            raise ValueError("the secret key is empty")
        self._current = (key_id(current), _mac_key(current))
        self._known: dict[int, list[bytes]] = {}
        for secret in (current, *older):
            self._known.setdefault(key_id(secret), []).append(_mac_key(secret))
        # Minting is the per-recipient cost of a campaign: start each MAC from a
        # copy of the already keyed state (same MACs as _mac/_host_mac, less work).
        self._keyed = hashlib.blake2b(key=self._current[1], digest_size=MAC_BYTES)
        self._keyed_hosts: dict[str, Any] = {}

    def mint(self, attempt_id: int, link_idx: int, host: str | None = None) -> str:
        """Mint the identifier of one link of one attempt, bound to ``host`` when given."""
        body = _BODY.pack(self._current[0], attempt_id, link_idx)
        if host:
            state = self._keyed_hosts.get(host)
            if state is None:
                state = self._keyed_hosts[host] = hashlib.blake2b(
                    key=self._current[1], digest_size=MAC_BYTES, person=b"clicktrail host")
            h = state.copy()
            h.update(body + host.encode("utf-8"))
        else:
            h = self._keyed.copy()
            h.update(body)
        return binascii.b2a_base64(body + h.digest(), newline=False).translate(_URLSAFE).decode("ascii")

    def verify(self, token: str, host: str | None = None) -> LinkRef | None:
        """Return what the identifier points at (on ``host``), or None if we did not mint it."""
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
            if host and hmac.compare_digest(_host_mac(secret, body, host), mac):
                return LinkRef(attempt_id, link_idx, host)
            if hmac.compare_digest(_mac(secret, body), mac):
                return LinkRef(attempt_id, link_idx)
        return None
