"""The SMTP relay: receive with aiosmtpd, stamp one copy per recipient, forward each with smtplib.

client → AUTH (the login's tracking defaults) → DATA → ``messages.track`` (one
copy per recipient, attempts recorded) → ``deliver`` (each copy in its own
upstream transaction, to its one recipient) → a delivery or failure event per
copy → one reply to the client's DATA.

Nothing is lost: DATA is answered 250 only when the upstream accepted every
copy.  Plain SMTP has a single DATA reply for all recipients, so when some
copies are accepted and others refused the client gets the refusal (4xx if any
refusal is temporary, so it retries; else 5xx), and the copies already accepted
are remembered for ``RETRY_WINDOW``: when the client sends the same message again
(same sender, recipient and bytes), those recipients are skipped, not mailed twice.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.utils
import hashlib
import ipaddress
import logging
import re
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from . import smtpusers
from .config import Config
from .errors import ClicktrailError, ConfigError
from .logstore import Event, Store, utcnow
from .messages import Copy, track, untouched
from .mime import BadSwitch, drop_headers, looks_like_mime
from .rewrite import Options
from .tracker import Clicktrail

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(days=5)  # as long as a usual MTA keeps retrying (Postfix: maximal_queue_lifetime)
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")


def split_hostport(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets) into host and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Upstream:
    """Where copies go, and how to talk to it."""

    host: str
    port: int
    tls: str = "none"  # none, starttls or tls
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 60
    hostname: str | None = None  # our name in EHLO

    @classmethod
    def from_config(cls, cfg: Config) -> Upstream:
        """The upstream of these settings; ConfigError when none is set."""
        if not cfg["smtp_upstream"]:
            raise ConfigError("CLICKTRAIL_SMTP_UPSTREAM is not set: give the mail server as HOST:PORT (or --upstream)")
        host, port = split_hostport(cfg["smtp_upstream"])
        return cls(host, port, cfg["smtp_upstream_tls"], cfg["smtp_upstream_user"], cfg["smtp_upstream_password"],
                   cfg["smtp_upstream_cafile"], cfg["smtp_upstream_timeout"] or 60, cfg["smtp_hostname"])

    def connect(self) -> smtplib.SMTP:
        """Open a session: greeting, EHLO, TLS and AUTH as configured."""
        context = ssl.create_default_context(cafile=self.cafile) if self.tls != "none" else None
        conn: smtplib.SMTP
        if self.tls == "tls":
            conn = smtplib.SMTP_SSL(self.host, self.port, self.hostname, timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(self.host, self.port, self.hostname, timeout=self.timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if self.tls == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.user:
                conn.login(self.user, self.password or "")
        except BaseException:
            conn.close()
            raise
        return conn


@dataclass
class Outcome:
    """What the upstream answered for one copy."""

    copy: Copy
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


def _text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return " ".join(text.split())  # a multi-line reply becomes one line


def _send(conn: smtplib.SMTP, envelope_from: str, copy: Copy, options: Sequence[str]) -> Outcome:
    """One copy, one transaction, one recipient."""
    rcpt = email.utils.parseaddr(copy.recipient or "")[1] or (copy.recipient or "")
    if not rcpt:
        return Outcome(copy, 554, "5.1.3 this copy has no recipient address")
    opts = [f"SIZE={len(copy.data)}"] if conn.has_extn("size") else []
    if conn.has_extn("8bitmime") and any(b > 127 for b in copy.data):
        opts.append("BODY=8BITMIME")
    if "SMTPUTF8" in options and conn.has_extn("smtputf8"):
        opts.append("SMTPUTF8")
    resp: bytes | str
    code, resp = conn.mail(envelope_from, opts)
    if code == 250:
        code, resp = conn.rcpt(rcpt)
        if code in (250, 251):
            try:
                code, resp = conn.data(copy.data)
            except smtplib.SMTPDataError as e:  # DATA itself refused (no 354)
                code, resp = e.smtp_code, e.smtp_error
            if code == 250:
                return Outcome(copy, code, _text(resp))
    conn.rset()  # a refused transaction must not leak into the next copy's
    return Outcome(copy, code, _text(resp))


def deliver(store: Store, upstream: Upstream, envelope_from: str, copies: Sequence[Copy],
            options: Sequence[str] = ()) -> list[Outcome]:
    """Send each copy to its one recipient upstream; log a delivery or failure event for each."""
    outcomes: list[Outcome] = []
    if not copies:
        return outcomes
    try:
        conn = upstream.connect()
    except smtplib.SMTPResponseException as e:  # a refusing greeting, STARTTLS or AUTH: our side to fix, so retry
        why = f"4.4.0 upstream {upstream.host}:{upstream.port} refused the session: {e.smtp_code} {_text(e.smtp_error)}"
        outcomes = [Outcome(c, 451, why) for c in copies]
    except (OSError, smtplib.SMTPException) as e:
        why = f"4.4.1 upstream {upstream.host}:{upstream.port} unreachable: {e or type(e).__name__}"
        outcomes = [Outcome(c, 451, why) for c in copies]
    else:
        broken: str | None = None
        for copy in copies:
            if broken is None:
                try:
                    outcomes.append(_send(conn, envelope_from, copy, options))
                    continue
                except smtplib.SMTPResponseException as e:
                    broken = f"4.4.2 upstream closed the session: {e.smtp_code} {_text(e.smtp_error)}"
                except (OSError, smtplib.SMTPException) as e:
                    broken = f"4.4.2 connection to upstream lost: {e or type(e).__name__}"
            outcomes.append(Outcome(copy, 451, broken))
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()
    for o in outcomes:
        _log(store, o)
    return outcomes


def _log(store: Store, o: Outcome) -> None:
    event = Event("delivery" if o.ok else "failure", int(o.copy.message, 16), detail=o.reply)
    (log.info if o.ok else log.warning)("copy %s to %s: %s", o.copy.message, o.copy.recipient, o.reply)
    try:
        store.add_event(event)
    except ClicktrailError as e:  # the mail went (or not) all the same; only its log line is lost
        log.error("%s event for %s lost: %s", event.type, o.copy.message, e.message)


def summary(outcomes: Sequence[Outcome], skipped: int = 0) -> str:
    """The one SMTP reply for a whole message: 250 only when every copy was accepted."""
    total = len(outcomes) + skipped
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        again = f" ({skipped} already delivered earlier)" if skipped else ""
        return f"250 2.0.0 OK: {total} of {total} copies accepted upstream{again}"
    codes = {o.code for o in failed}
    if any(400 <= c < 500 for c in codes):
        code = codes.pop() if len(codes) == 1 else 451
    else:
        code = codes.pop() if len(codes) == 1 and codes <= {550, 551, 552, 553, 554} else 554
    first = next((o for o in failed if o.code // 100 == code // 100), failed[0])
    detail = first.text if _ENHANCED.match(first.text) else f"{code // 100}.0.0 {first.text}"
    if code // 100 != int(detail[0]):  # the enhanced code must agree with the reply's class
        detail = f"{code // 100}{detail[1:]}"
    accepted = total - len(failed)
    note = f" ({accepted} accepted: sending the same message again skips them)" if accepted else ""
    line = f"{code} {detail} [{len(failed)} of {total} copies refused, first: {first.copy.recipient}]{note}"
    return line[:500]


class _Handler:
    """aiosmtpd hooks: who may send, and what happens to a message."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if self.relay.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data if session.authenticated else None
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.original_content or b""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.relay.pool, self.relay.relay, envelope.mail_from or "",
                                          list(envelope.rcpt_tos), bytes(content), login,
                                          list(envelope.mail_options))


class Relay:
    """The relay server: settings checked at construction, ``start``/``stop`` around a listening thread."""

    def __init__(self, parts: Clicktrail, loopback: bool | None = None) -> None:
        cfg = parts.config
        self.parts, self.cfg = parts, cfg
        self.upstream = Upstream.from_config(cfg)
        self.host, self.port = split_hostport(cfg["smtp_listen"])
        # Decided by the listening address; tests may pass loopback=False to get the public rules on 127.0.0.1.
        self.loopback = is_loopback(self.host) if loopback is None else loopback
        self.tls = self._tls_context()
        if not self.loopback and self.tls is None:
            raise ConfigError(f"listening on {cfg['smtp_listen']} (not loopback) needs CLICKTRAIL_SMTP_TLS_CERT and"
                              " CLICKTRAIL_SMTP_TLS_KEY: AUTH is only accepted after STARTTLS")
        self.auth_required = not (self.loopback and cfg["smtp_loopback_open"])
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="clicktrail-relay")
        self.hostname = cfg["smtp_hostname"] or socket.getfqdn()
        self.controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, server_hostname=self.hostname,
            data_size_limit=cfg["smtp_max_size"] or None, enable_SMTPUTF8=True, tls_context=self.tls,
            authenticator=self._authenticate, auth_require_tls=not self.loopback, auth_required=False)

    def _tls_context(self) -> ssl.SSLContext | None:
        cert, key = self.cfg["smtp_tls_cert"], self.cfg["smtp_tls_key"]
        if not cert and not key:
            return None
        if not (cert and key):
            raise ConfigError("CLICKTRAIL_SMTP_TLS_CERT and CLICKTRAIL_SMTP_TLS_KEY go together: set both or neither")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"CLICKTRAIL_SMTP_TLS_CERT/KEY: cannot load {cert} and {key}: {e}") from e
        return context

    def start(self) -> None:
        """Listen; return once the server answers."""
        try:
            self.controller.start()
        except OSError as e:
            raise ConfigError(f"CLICKTRAIL_SMTP_LISTEN: cannot listen on {self.cfg['smtp_listen']}: {e}") from e

    def stop(self) -> None:
        """Stop listening, then let copies already in flight finish and be logged."""
        self.controller.stop()
        self.pool.shutdown(wait=True)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        # scrypt blocks the loop some tens of milliseconds per try, which also slows guessing.
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = smtpusers.authenticate(self.parts.store, auth_data.login.decode("utf-8", "replace"),
                                       auth_data.password.decode("utf-8", "replace"))
        if login is None:
            log.warning("%s: AUTH %s failed for %r", session.peer, mechanism, auth_data.login)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=login)

    def relay(self, mail_from: str, rcpts: list[str], raw: bytes, login: smtpusers.Login | None,
              options: list[str]) -> str:
        """Track and forward one received message; the reply for the client's DATA."""
        rcpts = list(dict.fromkeys(rcpts))  # a recipient named twice still gets one copy
        try:
            digests = {r: _digest(mail_from, r, raw) for r in rcpts}
            done = self._already_sent(list(digests.values()))
            todo = [r for r in rcpts if digests[r] not in done]
            if len(todo) < len(rcpts):
                log.info("%d recipients skipped: this message reached them on an earlier try", len(rcpts) - len(todo))
            outcomes = deliver(self.parts.store, self.upstream, mail_from, self.copies(raw, todo, login), options)
            self._remember([(digests[r], int(o.copy.message, 16)) for r, o in zip(todo, outcomes, strict=True) if o.ok])
            return summary(outcomes, len(rcpts) - len(todo))
        except BadSwitch as e:
            return f"554 5.6.0 {e}"
        except (sqlite3.Error, ClicktrailError) as e:
            log.error("message not relayed, the store failed: %s", e)
            return "451 4.3.0 cannot record the message now; try again later"
        except Exception:  # the boundary: a bug must cost this message a retry, not the relay its other clients
            log.exception("message not relayed")
            return "451 4.3.0 internal error; try again later"

    def copies(self, raw: bytes, rcpts: list[str], login: smtpusers.Login | None) -> list[Copy]:
        """One copy per recipient: rewritten with the login's defaults, or untouched when DKIM-signed."""
        if not rcpts:
            return []
        if looks_like_mime(raw) and "dkim-signature" in email.parser.BytesHeaderParser(policy=compat32).parsebytes(raw):
            if not self.cfg["smtp_rewrite_dkim"]:
                log.warning("message carries a DKIM-Signature: forwarded untouched, without tracking")
                return untouched(self.parts.store, raw, rcpts)
            log.warning("message carries a DKIM-Signature: removed, as rewriting breaks it")
            raw = drop_headers(raw, ("dkim-signature",))
        c = self.cfg
        opts = Options(c["click_domain"], login.track_clicks if login else c["track_clicks"],
                       login.track_opens if login else c["track_opens"], c["scam_protection"])
        return track(self.parts.store, self.parts.signer, opts, raw, rcpts).copies

    def _already_sent(self, digests: list[str]) -> set[str]:
        if not digests:
            return set()
        since = (datetime.now(UTC) - RETRY_WINDOW).isoformat(timespec="microseconds")
        marks = ", ".join("?" * len(digests))
        rows = self.parts.store.query(f"SELECT digest FROM relay_sent WHERE digest IN ({marks}) AND ts >= ?",
                                      [*digests, since])
        return {r[0] for r in rows}

    def _remember(self, sent: list[tuple[str, int]]) -> None:
        if not sent:
            return
        now = utcnow()
        since = (datetime.now(UTC) - RETRY_WINDOW).isoformat(timespec="microseconds")
        try:
            self.parts.store.write([
                ("INSERT INTO relay_sent (digest, attempt_id, ts) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                 [(d, a, now) for d, a in sent]),
                ("DELETE FROM relay_sent WHERE ts < ?", [(since,)]),
            ])
        except sqlite3.Error as e:  # the copies went; at worst a retry sends them again
            log.error("delivered copies not remembered: %s", e)


def _digest(mail_from: str, rcpt: str, raw: bytes) -> str:
    """Names one message to one recipient: the same bytes again are a retry."""
    h = hashlib.sha256(b"clicktrail relay\x00")
    h.update(mail_from.encode("utf-8", "surrogateescape") + b"\x00" + rcpt.lower().encode("utf-8", "surrogateescape"))
    h.update(b"\x00" + raw)
    return h.hexdigest()
