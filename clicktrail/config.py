"""Settings: one table, read once; environment over config file over defaults.

Every setting is named ``CLICKTRAIL_…`` in the environment and by its lower-case
short name in the TOML file given by ``CLICKTRAIL_CONFIG``.  A bad value
stops start-up with a ``ConfigError`` naming the setting.  The README's
settings table is checked against ``SETTINGS`` by a test.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected yes/no, true/false, on/off or 1/0")


def _int(value: Any) -> int:
    n = int(value)
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _base_url(value: Any) -> str:
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected a base URL such as https://clicks.example.com")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("a click domain is scheme, host and port only, without a path")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _text(value: Any) -> str:
    return str(value)


def _keys(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(k.strip() for k in items if k.strip())


@dataclass(frozen=True)
class Setting:
    name: str  # short name; CLICKTRAIL_<NAME> in the environment
    parse: Callable[[Any], Any]
    default: Any
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "CLICKTRAIL_" + self.name.upper()


SETTINGS = (
    Setting("click_domain", _base_url, "http://127.0.0.1:8000",
            "Base URL of the click domain that tracked links point at."),
    Setting("database", _text, "clicktrail.db", "SQLite database file."),
    Setting("secret_key", _text, None,
            "Key that signs link identifiers; when unset, generated once and kept beside the database.",
            secret=True),
    Setting("old_secret_keys", _keys, (),
            "Earlier secret keys (comma-separated), still accepted so old links keep working.", secret=True),
    Setting("stats_password", _text, None,
            "Password of the stats page; with none set, the stats page is disabled.", secret=True),
    Setting("trusted_proxies", _int, 0,
            "Number of reverse proxies in front of the tracker whose X-Forwarded-For is believed."),
    Setting("track_clicks", _bool, True, "Rewrite links for click tracking unless a message says otherwise."),
    Setting("track_opens", _bool, True, "Add the open pixel and track images unless a message says otherwise."),
    Setting("scam_protection", _bool, True,
            "Leave links alone whose visible text is itself a URL or host name."),
    Setting("spool", _text, None,
            "Append-only file for events the database could not take; default: the database path + .spool."),
    Setting("sync", _bool, True,
            "Wait for the disk on every event write (SQLite synchronous=FULL); off trades power-loss safety for speed."),
)
_BY_ENV = {s.env: s for s in SETTINGS}


class Config(Mapping[str, Any]):
    """Read-only settings; secrets are hidden from ``repr``."""

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        secret = {s.name for s in SETTINGS if s.secret}
        shown = {k: ("***" if k in secret and v else v) for k, v in self._values.items()}
        return f"Config({shown})"


def load(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read every setting: overrides, then environment, then config file, then default."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    path = environ.get("CLICKTRAIL_CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                file_values = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"CLICKTRAIL_CONFIG: cannot read {path}: {e}") from e
        names = {s.name for s in SETTINGS}
        unknown = sorted(set(file_values) - names)
        if unknown:
            raise ConfigError(f"CLICKTRAIL_CONFIG: unknown setting {unknown[0]!r} in {path}")
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw: Any
        if overrides and s.name in overrides:
            raw, where = overrides[s.name], s.name
        elif s.env in environ and environ[s.env] != "":
            raw, where = environ[s.env], s.env
        elif s.name in file_values:
            raw, where = file_values[s.name], f"{s.name} in {path}"
        else:
            values[s.name] = s.default
            continue
        try:
            values[s.name] = None if raw is None else s.parse(raw)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: bad value: {e}") from e
    if not values["spool"]:
        values["spool"] = values["database"] + ".spool"
    if not values["secret_key"]:
        database = Path(values["database"])
        values["secret_key"] = _kept_secret(database.with_name(database.name + ".secret"))
    return Config(values)


def _kept_secret(path: Path) -> str:
    """Generate the secret key once and keep it beside the database."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # atomic: the first worker's key wins, complete or not at all
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """CLICKTRAIL_ variables that name no setting (likely typos)."""
    return sorted(k for k in environ if k.startswith("CLICKTRAIL_") and k not in _BY_ENV and k != "CLICKTRAIL_CONFIG")
