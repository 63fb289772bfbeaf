"""API keys: created once and shown once, kept only as a hash, checked in constant time.

A key reads ``ct_<id>_<secret>``: the id finds the row, the secret (32 random
bytes) is what proves it.  Only the SHA-256 of the whole key is stored; with
that much entropy a plain hash is as good as a slow one, and it is compared
with ``hmac.compare_digest``.  The table is created by migration 2 in
``logstore.MIGRATIONS``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from .errors import BadInput
from .logstore import Store, utcnow

PREFIX = "ct_"
_KEY = re.compile(r"^ct_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
MAX_NAME = 100


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: str
    revoked_at: str | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create(store: Store, name: str) -> tuple[ApiKey, str]:
    """Make a new key named ``name``; return it and the key itself (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise BadInput(f"a key name is 1 to {MAX_NAME} printable characters", field="name")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    made = ApiKey(key_id, name, utcnow(), None)
    store.write([("INSERT INTO api_keys (id, name, key_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)",
                  [(made.id, made.name, _hash(key), made.created_at)])])
    return made, key


def listing(store: Store) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return [ApiKey(*row) for row in store.query(
        "SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id")]


def revoke(store: Store, key_id: str) -> ApiKey:
    """Revoke a key by its id; it stops working at once."""
    rows = store.query("SELECT id, name, created_at, revoked_at FROM api_keys WHERE id = ?", (key_id.strip(),))
    if not rows:
        raise BadInput(f"no API key has the id {key_id!r} (see `clicktrail keys list`)", field="id")
    found = ApiKey(*rows[0])
    if found.revoked_at is None:
        when = utcnow()
        store.write([("UPDATE api_keys SET revoked_at = ? WHERE id = ?", [(when, found.id)])])
        found = ApiKey(found.id, found.name, found.created_at, when)
    return found


def check(store: Store, key: str) -> ApiKey | None:
    """The live key that ``key`` is, or None for a wrong, unknown or revoked key."""
    m = _KEY.match(key)
    if m is None:
        return None
    rows = store.query("SELECT id, name, created_at, revoked_at, key_hash FROM api_keys WHERE id = ?", (m.group(1),))
    if not rows:
        return None
    *fields, stored = rows[0]
    if not hmac.compare_digest(_hash(key), stored) or fields[3] is not None:
        return None
    return ApiKey(*fields)
