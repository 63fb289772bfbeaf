"""Click domains: which domain a sender's links use, and the hosts the tracker answers on.

Each sender identity (its ``From`` domain, SMTP login or API key name) can
have a click domain of its own, e.g. ``https://offers.shop.example`` (a DNS
CNAME to the tracker); everything else uses the default click domain
(``CLICKTRAIL_CLICK_DOMAIN``).  The table ``click_domains`` is keyed by
identity kind and value.  Links minted for a custom domain are bound to its
host (``Signer.mint(..., host=...)``); the tracker answers only on the
configured click domains and the dashboard host, and 404s any other ``Host``;
the dashboard and /api answer on the dashboard host only.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, request

from . import dns
from .errors import BadInput, shown
from .logstore import Store, utcnow
from .mime import looks_like_mime
from .submission import Unparsable, parse_addresses

log = logging.getLogger(__name__)

# Precedence: an authenticated identity (API key, SMTP login) before the From
# header, which the sender writes.
KINDS = ("api_key", "login", "from")
KIND_NAMES = {"api_key": "API key", "login": "SMTP login", "from": "From domain"}
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")  # a host name's label: no "_", unlike other DNS names
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


@dataclass(frozen=True)
class Entry:
    kind: str
    value: str
    base: str
    added: str


def normalize_domain(text: str) -> str:
    """A domain name lower-cased, without a trailing dot, IDN in punycode; BadInput if it is not one."""
    name = text.strip().lower().rstrip(".")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise BadInput(f"{shown(text)} is not a domain name") from e
    if not _DOMAIN.match(name) or len(name) > 253:
        raise BadInput(f"{shown(text)} is not a domain name")
    return name


def _host_name(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return normalize_domain(host)


def parse_base(text: str) -> str:
    """A click domain as a base URL (``https://`` when no scheme is given); BadInput if it is not one."""
    raw = text.strip().rstrip("/")
    try:
        parts = urlsplit(raw if "://" in raw else "https://" + raw)
    except ValueError as e:  # e.g. an unclosed "[" of an IPv6 address
        raise BadInput(f"{shown(text)} is not a click domain: {e}") from e
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise BadInput(f"{shown(text)} is not a click domain such as offers.example.com or https://offers.example.com")
    try:
        port = parts.port
    except ValueError as e:
        raise BadInput(f"{shown(text)} has a bad port") from e
    host = _host_name(parts.hostname)
    host = f"[{host}]" if ":" in host else host
    if port is not None and f":{port}" != _DEFAULT_PORTS[parts.scheme]:
        host += f":{port}"
    return f"{parts.scheme}://{host}"


def click_domain(text: str, reserved: Collection[str] = ()) -> str:
    """A sender's new click domain as a base URL; BadInput unless it is a DNS host name of ours to give.

    That is two labels or more of letters, digits and hyphens (no IP address,
    no ``localhost``), and none of ``reserved`` (the tracker's own host names).
    """
    base = parse_base(text)
    name = urlsplit(base).hostname or ""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise BadInput(f"{text!r} is an IP address; a click domain is a DNS name (a CNAME to the tracker),"
                       " such as offers.example.com")
    labels = name.split(".")
    if len(labels) < 2 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise BadInput(f"{text!r} is not a DNS host name of two labels or more (letters, digits and hyphens),"
                       " such as offers.example.com")
    if name in reserved:
        raise BadInput(f"{name} is the tracker's own host (the default click domain or the dashboard host),"
                       " not a sender's click domain")
    return base


def own_names(cfg: Any) -> set[str]:
    """The host names (without port) of the default click domain and the dashboard host."""
    return {urlsplit("//" + host).hostname or "" for host in home_hosts(cfg)}


def host_of(base: str) -> str:
    """The ``Host`` a browser sends for a base URL: the host, and the port if not the default one."""
    scheme, _, netloc = base.partition("://")
    netloc = netloc.lower().rstrip("/")
    default = _DEFAULT_PORTS.get(scheme, "")
    return netloc[: -len(default)] if default and netloc.endswith(default) else netloc


def identity(kind: str, value: str) -> str:
    """A sender identity's value as stored (a From domain normalized); BadInput if it is not one."""
    if kind not in KINDS:
        raise BadInput(f"unknown sender identity kind {shown(kind)}; one of {', '.join(KINDS)}")
    if kind == "from":
        return normalize_domain(value.rpartition("@")[2])
    if not value.strip():
        raise BadInput(f"the {KIND_NAMES[kind]} is empty")
    return value.strip()


# -- the table --------------------------------------------------------------------------
def add(store: Store, kind: str, value: str, base: str, reserved: Collection[str] = ()) -> Entry:
    """Give a sender identity its click domain (replacing any it had); ``reserved``: host names it may not be."""
    entry = Entry(kind, identity(kind, value), click_domain(base, reserved), utcnow())
    store.write([
        ("DELETE FROM click_domains WHERE kind = ? AND value = ?", [(entry.kind, entry.value)]),
        ("INSERT INTO click_domains (kind, value, base, host, added) VALUES (?, ?, ?, ?, ?)",
         [(entry.kind, entry.value, entry.base, host_of(entry.base), entry.added)]),
    ])
    return entry


def remove(store: Store, kind: str, value: str) -> bool:
    """Take a sender identity's click domain away; False if it had none."""
    value = identity(kind, value)
    if not store.query("SELECT 1 FROM click_domains WHERE kind = ? AND value = ?", (kind, value)):
        return False
    store.write([("DELETE FROM click_domains WHERE kind = ? AND value = ?", [(kind, value)])])
    return True


def remove_domain(store: Store, base: str) -> int:
    """Stop answering on a click domain: remove it from every identity; return how many."""
    host = host_of(parse_base(base))
    n = store.query("SELECT COUNT(*) FROM click_domains WHERE host = ?", (host,))[0][0]
    store.write([("DELETE FROM click_domains WHERE host = ?", [(host,)])])
    return int(n)


def entries(store: Store) -> list[Entry]:
    """Every identity's click domain, by domain then identity."""
    rows = store.query("SELECT kind, value, base, added FROM click_domains ORDER BY host, kind, value")
    return [Entry(*row) for row in rows]


def _lookup(store: Store, kind: str, values: list[str]) -> str | None:
    if not values:
        return None
    marks = ", ".join("?" for _ in values)
    rows = store.query(f"SELECT value, base FROM click_domains WHERE kind = ? AND value IN ({marks})", (kind, *values))
    found = dict(rows)
    return next((found[v] for v in values if v in found), None)


def domain_for(store: Store, from_domain: str | None = None, login: str | None = None,
               api_key_name: str | None = None, *, default: str) -> str:
    """The click domain (base URL) for a sender: API key, then SMTP login, then From domain, else ``default``."""
    for kind, value in (("api_key", api_key_name), ("login", login)):
        if value:
            base = _lookup(store, kind, [value.strip()])
            if base:
                return base
    if from_domain:
        # news.shop.example falls back to shop.example: a domain covers its subdomains.
        labels = from_domain.lower().rstrip(".").split(".")
        base = _lookup(store, "from", [".".join(labels[i:]) for i in range(len(labels) - 1)] or labels)
        if base:
            return base
    return default


def from_domain(raw: bytes) -> str | None:
    """The domain of a MIME message's ``From`` address, or None (bare HTML, no or bad From)."""
    if not looks_like_mime(raw):
        return None
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    try:
        addresses = parse_addresses([str(v) for v in headers.get_all("From", [])])
    except Unparsable as e:
        # As for any other From we cannot read: the default click domain, and the message goes on.
        log.warning("the From header cannot be read (%s): the default click domain is used", e)
        return None
    for _, address in addresses:
        domain = address.rpartition("@")[2]
        if "@" in address and domain:
            try:
                return normalize_domain(domain)
            except BadInput:
                return None
    return None


# -- the hosts the tracker answers on ---------------------------------------------------------
def dashboard_host(cfg: Any) -> str:
    """The one host that serves the dashboard and /api: CLICKTRAIL_DASHBOARD_HOST, else the click domain's."""
    return str(cfg["dashboard_host"] or host_of(cfg["click_domain"]))


def home_hosts(cfg: Any) -> set[str]:
    """The default click domain's host and the dashboard host: where unbound links are valid."""
    return {host_of(cfg["click_domain"]), dashboard_host(cfg)}


def request_host() -> str:
    """This request's ``Host`` (X-Forwarded-Host only behind trusted proxies), normalized."""
    return request.host.lower().rstrip(".")  # werkzeug already drops the scheme's default port


def is_click_host(store: Store, host: str) -> bool:
    """True when a custom click domain has this host."""
    return bool(store.query("SELECT 1 FROM click_domains WHERE host = ?", (host,)))


def host_allowed(parts: Any, host: str) -> bool:
    """True when the tracker answers on this host: a home host or a custom click domain's."""
    if host in parts.home_hosts:
        return True
    try:
        return is_click_host(parts.store, host)
    except sqlite3.Error as e:
        # Let it through: bound links still check their own host, unbound ones only work on home hosts.
        log.error("click domain lookup failed: %s", e)
        return True


def _only_our_hosts() -> None:
    from .tracker import TRACKING, ct

    parts, host = ct(), request_host()
    if host == parts.dashboard_host:
        return
    # A click domain is a sender's name: it serves that sender's links, never the
    # dashboard's login or the API, which would then answer under every sender's name.
    if request.endpoint not in TRACKING or not host_allowed(parts, host):
        abort(404)


def init_app(app: Flask) -> None:
    """Answer only on our own hosts: tracked links on every click domain, the rest on the dashboard host."""
    app.before_request(_only_our_hosts)


# -- DNS check ------------------------------------------------------------------------------------
@dataclass
class Report:
    ok: bool
    lines: list[str]


def _addresses(name: str, server: tuple[str, int], timeout: float) -> tuple[list[dns.Record], bool]:
    """All A/AAAA answers for a name (with the CNAME chain); False when the name does not exist."""
    records: list[dns.Record] = []
    exists = False
    for rtype in (dns.A, dns.AAAA):
        answer = dns.resolve(name, rtype, server, timeout)
        if answer.rcode not in (dns.NOERROR, dns.NXDOMAIN):
            raise dns.DNSError(f"the resolver answered {dns.RCODES.get(answer.rcode, answer.rcode)} for {name}")
        exists = exists or answer.rcode == dns.NOERROR
        records += [r for r in answer.records if r not in records]
    return records, exists


def _ordered(addresses: set[str]) -> list[str]:
    return sorted(addresses, key=lambda a: (":" in a, a))  # IPv4 first


def check(domain: str, target: str, server: tuple[str, int], timeout: float = 3.0) -> Report:
    """Tell whether ``domain`` points at the tracker host ``target`` (CNAME, or the same addresses)."""
    name = _host_name(urlsplit(parse_base(domain)).hostname or "")
    target = _host_name(target)
    try:
        target_addrs = {str(ipaddress.ip_address(target))}
    except ValueError:
        target_addrs = {r.value for r in _addresses(target, server, timeout)[0] if r.type != dns.CNAME}
    records, exists = _addresses(name, server, timeout)
    aliases = [r.value for r in records if r.type == dns.CNAME]
    addrs = {r.value for r in records if r.type != dns.CNAME}
    if target in aliases:
        return Report(True, [f"ok: {name} is an alias (CNAME) of {target}"])
    if addrs & target_addrs:
        shared = ", ".join(_ordered(addrs & target_addrs))
        return Report(True, [f"ok: {name} points at {shared}, an address of {target}"])
    if not exists:
        lines = [f"{name} does not exist in DNS (NXDOMAIN)."]
    elif not records:
        lines = [f"{name} has no CNAME, A or AAAA record."]
    else:
        now = ", ".join([f"CNAME {a}" for a in aliases] + _ordered(addrs))
        known = f" ({', '.join(_ordered(target_addrs))})" if target_addrs else ""
        lines = [f"{name} points at {now}, not at {target}{known}."]
    if target in target_addrs:  # the tracker is known by an address only: no CNAME possible
        kind = "AAAA" if ":" in target else "A"
        lines += ["Create this record (replacing any other CNAME, A or AAAA record of the name):",
                  f"  {name}. 3600 IN {kind} {target}"]
    else:
        lines += ["Create this record (replacing any other CNAME, A or AAAA record of the name):",
                  f"  {name}. 3600 IN CNAME {target}."]
        if target_addrs:
            lines.append("At a zone apex, where a CNAME is not allowed, create instead:")
            lines += [f"  {name}. 3600 IN {'AAAA' if ':' in a else 'A'} {a}" for a in _ordered(target_addrs)]
    return Report(False, lines)
