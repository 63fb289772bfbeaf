"""The SMTP relay: receive with aiosmtpd, stamp one copy per recipient, forward each (delivery.py).

client → AUTH (the login's tracking defaults) → DATA → ``messages.track`` (one
copy per recipient, attempts recorded) → ``deliver`` (each copy in its own
upstream transaction, to its one recipient) → a delivery or failure event per
copy → one reply to the client's DATA (``delivery.summary``).

Nothing is lost: DATA is answered 250 only when the upstream accepted every
copy.  Plain SMTP has a single DATA reply for all recipients, so when some
copies are accepted and others refused the client gets the refusal (4xx if any
refusal is temporary, so it retries; else 5xx), and the copies already accepted
are remembered for ``RETRY_WINDOW``: when the client sends the same message again
(same upstream, sender, recipient, Message-ID and bytes), those recipients are
skipped, not mailed twice.  Only a message with a Message-ID can be recognised
as a retry: identical alerts without one are separate messages, each forwarded
(a possible duplicate after a partial failure beats silently lost mail).
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import ipaddress
import logging
import socket
import sqlite3
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.policy import compat32
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from . import smtpusers
from .delivery import Upstream, deliver, split_hostport, summary
from .errors import ClicktrailError, ConfigError
from .logstore import utcnow
from .messages import Copy, for_rewrite, track, untouched
from .mime import BadSwitch, looks_like_mime
from .rewrite import Options
from .tracker import Clicktrail

log = logging.getLogger(__name__)

RETRY_WINDOW = timedelta(days=5)  # as long as a usual MTA keeps retrying (Postfix: maximal_queue_lifetime)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _not_login_data(record: logging.LogRecord) -> bool:
    # aiosmtpd warns about its own use of Session.login_data on every successful AUTH.
    return "login_data is deprecated" not in record.getMessage()


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

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not _mailbox(address):
            return "553 5.1.3 not a valid recipient address"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        login = session.auth_data if session.authenticated else None
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.original_content or b""
        loop = asyncio.get_running_loop()
        with self.relay.idle:
            self.relay.busy += 1
        try:
            return await loop.run_in_executor(self.relay.pool, self.relay.relay, envelope.mail_from or "",
                                              list(envelope.rcpt_tos), bytes(content), login,
                                              list(envelope.mail_options))
        finally:  # the reply is written in this same step of the loop, before stop() can cancel anything
            with self.relay.idle:
                self.relay.busy -= 1
                self.relay.idle.notify_all()


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
        logging.getLogger("mail.log").addFilter(_not_login_data)
        self.busy, self.idle = 0, threading.Condition()  # messages between DATA and our reply
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
        """Stop listening, answer the messages in flight, then close every session."""
        server = self.controller.server
        if server is not None:
            self.controller.loop.call_soon_threadsafe(server.close)
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0, timeout=2 * self.upstream.timeout + 30)
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
            message_id = _message_id(raw)
            where = f"{self.upstream.host}:{self.upstream.port}"
            digests = {r: _digest(where, mail_from, r, message_id, raw) for r in rcpts} if message_id else {}
            done = self._already_sent(list(digests.values()))
            todo = [r for r in rcpts if digests.get(r) not in done]
            if len(todo) < len(rcpts):
                log.info("%d recipients skipped: this message reached them on an earlier try", len(rcpts) - len(todo))
            outcomes = deliver(self.parts.store, self.upstream, mail_from, self.copies(raw, todo, login), options)
            self._remember([(digests[r], int(o.copy.message, 16))
                            for r, o in zip(todo, outcomes, strict=True) if o.ok and r in digests])
            return summary(outcomes, len(rcpts) - len(todo), remembered=bool(message_id))
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
        rewritable = for_rewrite(raw, self.cfg["smtp_rewrite_dkim"])
        if rewritable is None:
            log.warning("message carries a DKIM-Signature: forwarded untouched, without tracking")
            return untouched(self.parts.store, raw, rcpts)
        if rewritable is not raw:
            log.warning("message carries a DKIM-Signature: removed, as rewriting breaks it")
        raw = rewritable
        c = self.cfg
        opts = Options(c["click_domain"], login.track_clicks if login else c["track_clicks"],
                       login.track_opens if login else c["track_opens"], c["scam_protection"])
        return track(self.parts.store, self.parts.signer, opts, raw, rcpts,
                     login=login.name if login else None).copies

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
            self.parts.store.write([  # expired marks go first, so an old one cannot shadow a new one
                ("DELETE FROM relay_sent WHERE ts < ?", [(since,)]),
                ("INSERT INTO relay_sent (digest, attempt_id, ts) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                 [(d, a, now) for d, a in sent]),
            ])
        except sqlite3.Error as e:  # the copies went; at worst a retry sends them again
            log.error("delivered copies not remembered: %s", e)


def _mailbox(address: str) -> bool:
    """Whether a RCPT address can name a mailbox: local@domain (UTF-8 allowed: SMTPUTF8), or Postmaster alone."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address.lower() == "postmaster"
    return bool(local and domain) and address.isprintable() and not any(c.isspace() for c in address)


def _message_id(raw: bytes) -> str | None:
    """The message's Message-ID, or None when it has none (then no send is a retry of another)."""
    if not looks_like_mime(raw):
        return None
    value = email.parser.BytesHeaderParser(policy=compat32).parsebytes(raw).get("message-id")
    if value is None:
        return None
    return str(value).strip() or None


def _digest(upstream: str, mail_from: str, rcpt: str, message_id: str, raw: bytes) -> str:
    """Names one message to one recipient through one upstream: the same again is a retry."""
    h = hashlib.sha256(b"clicktrail relay 2\x00")
    for part in (upstream, mail_from, rcpt.lower(), message_id):
        h.update(part.encode("utf-8", "surrogateescape") + b"\x00")
    h.update(raw)
    return h.hexdigest()
