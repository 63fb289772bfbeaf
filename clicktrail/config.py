"""Settings: one table, read once; environment over config file over defaults.

Every setting is named ``CLICKTRAIL_…`` in the environment and by its lower-case
short name in the TOML file given by ``CLICKTRAIL_CONFIG``.  A bad value
stops start-up with a ``ConfigError`` naming the setting.  The README's
settings table is checked against ``SETTINGS`` by a test.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError


def yes_no(value: Any) -> bool:
    """Read a yes/no switch (yes/no, true/false, on/off, 1/0); ValueError for anything else."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected yes/no, true/false, on/off or 1/0")


def _int(value: Any) -> int:
    if isinstance(value, float) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, not {value!r}")
    n = int(value)
    if n < 0:
        raise ValueError("must not be negative")
    return n


def _positive(value: Any) -> int:
    n = _int(value)
    if n < 1:
        raise ValueError("must be at least 1")
    return n


# A host name as a URL carries it (ASCII: punycode for IDN), or an IP address (IPv6 without its brackets).
_HOST_CHARS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|[0-9a-f:.]+")


def _base_url(value: Any) -> str:
    url = _text(value).strip().rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as e:
        raise ValueError(f"bad port in {url!r}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname or not _HOST_CHARS.fullmatch(parts.hostname):
        raise ValueError("expected a base URL such as https://clicks.example.com (an IDN host in its xn-- form)")
    if parts.path or parts.query or parts.fragment:
        raise ValueError("a click domain is scheme, host and port only, without a path")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _host(value: Any) -> str:
    text = _text(value).strip().rstrip("/")
    parts = urlsplit(text if "://" in text else "//" + text)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as e:
        raise ValueError(f"bad port in {text!r}") from e
    if (not parts.hostname or parts.path or parts.query or parts.fragment
            or not _HOST_CHARS.fullmatch(parts.hostname)):
        raise ValueError("expected a host name (with its port if not the default), such as stats.example.com")
    return parts.netloc.lower().rstrip(".")


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected text, not {type(value).__name__}")
    return str(value)


def _hostport(value: Any) -> str:
    host, sep, port = str(value).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:2525 or [::1]:2525")
    return f"{host}:{int(port)}"


def _upstream_tls(value: Any) -> str:
    v = str(value).strip().lower()
    if v not in ("none", "starttls", "tls"):
        raise ValueError("expected none, starttls or tls")
    return v


def _keys(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(k.strip() for k in items if k.strip())


def _users(value: Any) -> tuple[tuple[str, str], ...]:
    users = []
    for item in _keys(value):
        name, sep, hashed = item.partition(":")
        if not sep or not name.strip() or not hashed.strip():
            raise ValueError("expected name:hash pairs, e.g. ann:scrypt:32768:8:1$...")
        users.append((name.strip(), hashed.strip()))
    return tuple(users)


def _dashboard(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    v = str(value).strip().lower()
    if v not in ("auto", "on", "off"):
        raise ValueError("expected auto, on or off")
    return v


def _timezone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown timezone {name!r}; use an IANA name such as Europe/Berlin") from e
    return name


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
    Setting("dashboard_host", _host, None,
            "Host (and port) of the stats dashboard and /api (click domains serve tracked links only);"
            " default: the click domain's host."),
    Setting("database", _text, "clicktrail.db", "SQLite database file."),
    Setting("secret_key", _text, None,
            "Key that signs link identifiers; when unset, generated once and kept beside the database.",
            secret=True),
    Setting("old_secret_keys", _keys, (),
            "Earlier secret keys (comma-separated), still accepted so old links keep working.", secret=True),
    Setting("stats_password", _text, None,
            "Password of the stats dashboard, plain or as a hash from `clicktrail hash-password`.", secret=True),
    Setting("stats_users", _users, (),
            "Dashboard users as name:hash pairs (comma-separated); hashes from `clicktrail hash-password`.",
            secret=True),
    Setting("dashboard", _dashboard, "auto",
            "Stats dashboard: auto (on when a password or user is set), on (refuse to start without one), off."),
    Setting("timezone", _timezone, "UTC", "Timezone the dashboard shows times in (IANA name); users may pick another."),
    Setting("aggregate_interval", _int, 10,
            "Seconds between aggregation steps run inside each worker; 0 leaves it to `clicktrail aggregate`."),
    Setting("trusted_proxies", _int, 0,
            "Number of reverse proxies in front of the tracker whose X-Forwarded-For is believed."),
    Setting("track_clicks", yes_no, True, "Rewrite links for click tracking unless a message says otherwise."),
    Setting("track_opens", yes_no, True, "Add the open pixel and track images unless a message says otherwise."),
    Setting("scam_protection", yes_no, True,
            "Leave links alone whose visible text is itself a URL or host name."),
    Setting("max_message_bytes", _positive, 10_000_000,
            "Largest request body POST /api/messages accepts, in bytes; a larger one gets 413."),
    Setting("spool", _text, None,
            "Append-only file for events the database could not take (the journals go in the folder of its name + .journal);"
            " default: the database path + .spool."),
    Setting("sync", yes_no, False,
            "fsync every event write (SQLite synchronous=FULL): survives power loss, at a few hundred events/s on"
            " a slow disk; off (synchronous=NORMAL in WAL) survives any process crash or kill."),
    Setting("smtp_listen", _hostport, "127.0.0.1:2525", "Address (HOST:PORT) the SMTP relay listens on."),
    Setting("smtp_upstream", _hostport, None, "The mail server (HOST:PORT) the SMTP relay forwards to."),
    Setting("smtp_upstream_tls", _upstream_tls, "none",
            "TLS towards the upstream: none, starttls, or tls (TLS from the first byte, port 465)."),
    Setting("smtp_upstream_user", _text, None, "Login for AUTH towards the upstream; none means no AUTH."),
    Setting("smtp_upstream_password", _text, None, "Password for AUTH towards the upstream.", secret=True),
    Setting("smtp_upstream_cafile", _text, None,
            "CA certificates (PEM) that verify the upstream's certificate; default: the system's."),
    Setting("smtp_upstream_timeout", _int, 60, "Seconds to wait for the upstream before answering the client 451."),
    Setting("smtp_tls_cert", _text, None, "Certificate chain (PEM) the relay offers with STARTTLS."),
    Setting("smtp_tls_key", _text, None, "Private key (PEM) of the relay's STARTTLS certificate."),
    Setting("smtp_loopback_open", yes_no, False,
            "Let clients send without AUTH when the relay listens on a loopback address."),
    Setting("smtp_rewrite_dkim", yes_no, False,
            "Rewrite messages that carry a DKIM-Signature (the broken signature is removed) instead of passing them."),
    Setting("smtp_max_size", _int, 26214400, "Largest message the relay accepts, in bytes; larger ones get 552."),
    Setting("smtp_hostname", _text, None, "Name the relay greets with and sends in EHLO; default: this host's name."),
)
_BY_ENV = {s.env: s for s in SETTINGS}
MAX_CONFIG_BYTES = 1 << 20
# A value left as an example's placeholder is published text: a key or password anyone can read.
_PLACEHOLDER = re.compile(r"^\s*['\"]?change[-_ ]?me", re.IGNORECASE)


def _placeholder(value: Any) -> bool:
    if isinstance(value, (list, tuple)):  # a list of keys, or of user name and hash pairs
        return any(_placeholder(v) for v in value)
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value))


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
                data = f.read(MAX_CONFIG_BYTES + 1)  # not /dev/zero, or a log file named by mistake, read whole
            if len(data) > MAX_CONFIG_BYTES:
                raise ConfigError(f"CLICKTRAIL_CONFIG: {path} is not a settings file (over {MAX_CONFIG_BYTES:,} bytes)")
            file_values = tomllib.loads(data.decode("utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
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
        if _placeholder(values[s.name]):
            raise ConfigError(f"{where}: still the placeholder of the settings example; set a value of your own"
                              " (README, Deploy)")
    folder = Path(values["database"]).parent
    if not folder.is_dir():  # a mistyped path must not start an empty tracker somewhere else
        raise ConfigError(f"CLICKTRAIL_DATABASE: the folder {folder} does not exist")
    if not values["spool"]:
        values["spool"] = values["database"] + ".spool"
    elif not Path(values["spool"]).parent.is_dir():
        raise ConfigError(f"CLICKTRAIL_SPOOL: the folder {Path(values['spool']).parent} does not exist")
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
