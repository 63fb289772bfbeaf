"""SMTP logins of the relay: names, scrypt-hashed passwords, and each login's tracking defaults.

A password is stored as ``scrypt$N$r$p$salt$hash`` (salt and hash in
hex), so the cost can be raised later without breaking stored logins.
The table is created by migration 3 in logstore.py; its queries live here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from .errors import BadInput
from .logstore import Store, utcnow

# 16 MiB of memory and some tens of milliseconds per check: slow for guessing, fine per login.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_NAME = re.compile(r"^[\x21-\x7e]{1,128}$")
# Checked against when the name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"


@dataclass(frozen=True)
class Login:
    name: str
    track_clicks: bool
    track_opens: bool
    created: str = ""


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a fresh salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when the password matches the stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        want = bytes.fromhex(digest)
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=2**26)
    except (ValueError, UnicodeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(got, want)


def check_name(name: str) -> str:
    """Return the name if it can be a login: 1 to 128 printable ASCII characters, no spaces."""
    if not _NAME.match(name):
        raise BadInput(f"{name!r} cannot be a login name: use 1 to 128 printable ASCII characters without spaces",
                       field="name")
    return name


def add(store: Store, name: str, password: str, track_clicks: bool = True, track_opens: bool = True) -> Login:
    """Create a login; its tracking defaults apply to every message sent with it."""
    check_name(name)
    if not password:
        raise BadInput("the password is empty", field="password")
    if get(store, name) is not None:
        raise BadInput(f"login {name!r} already exists; remove it first to change it", field="name")
    login = Login(name, track_clicks, track_opens, utcnow())
    store.write([("INSERT INTO smtp_users (name, password, track_clicks, track_opens, created) VALUES (?, ?, ?, ?, ?)",
                  [(name, hash_password(password), int(track_clicks), int(track_opens), login.created)])])
    return login


def remove(store: Store, name: str) -> None:
    """Delete a login."""
    if get(store, name) is None:
        raise BadInput(f"there is no login {name!r}", field="name")
    store.write([("DELETE FROM smtp_users WHERE name = ?", [(name,)])])


def get(store: Store, name: str) -> Login | None:
    """The login of that name, or None."""
    rows = store.query("SELECT name, track_clicks, track_opens, created FROM smtp_users WHERE name = ?", (name,))
    return None if not rows else Login(rows[0][0], bool(rows[0][1]), bool(rows[0][2]), rows[0][3])


def all_logins(store: Store) -> list[Login]:
    """Every login, by name."""
    rows = store.query("SELECT name, track_clicks, track_opens, created FROM smtp_users ORDER BY name")
    return [Login(r[0], bool(r[1]), bool(r[2]), r[3]) for r in rows]


def authenticate(store: Store, name: str, password: str) -> Login | None:
    """The login if name and password match, else None."""
    rows = store.query("SELECT password FROM smtp_users WHERE name = ?", (name,))
    ok = check_password(password, rows[0][0] if rows else _DUMMY)
    return get(store, name) if ok and rows else None
