"""Delivery upstream: each recipient's copy in its own SMTP transaction, each outcome logged.

Used by the SMTP relay (relay.py) and by any caller that has tracked copies
to send (``POST /api/messages`` with ``send: true``):

    result = messages.track(store, signer, options, raw, recipients)
    outcomes = delivery.deliver(store, Upstream.from_config(cfg), envelope_from, result.copies)

An accepted copy gets a ``delivery`` event (detail: the upstream's reply), a
refused one a ``failure`` event (detail: code and text).  An upstream that is
down, times out, or refuses the session itself (greeting, STARTTLS, AUTH) is
our side's problem, not the message's: every copy gets 451, so senders retry.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from .config import Config
from .errors import ClicktrailError, ConfigError
from .logstore import Event, Store
from .messages import Copy
from .submission import Unparsable, parse_addresses

log = logging.getLogger(__name__)

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")


def split_hostport(value: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 in brackets) into host and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


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
    reached: bool = True  # False: the upstream never answered for this copy (down, session refused or lost)

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}"


def _text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
    return " ".join(text.split())  # a multi-line reply becomes one line


_BARE_LF = re.compile(rb"(?<!\r)\n")


def _send(conn: smtplib.SMTP, envelope_from: str, copy: Copy, options: Sequence[str]) -> Outcome:
    """One copy, one transaction, one recipient."""
    # smtplib parses both addresses again (quoteaddr): one it cannot read must cost this copy, not the session.
    try:
        parse_addresses([envelope_from])
    except Unparsable as e:
        return Outcome(copy, 553, f"5.1.7 the sender address cannot be read: {e}")
    try:
        found = parse_addresses([copy.recipient or ""])
    except Unparsable as e:
        return Outcome(copy, 553, f"5.1.3 the recipient address cannot be read: {e}")
    rcpt = (found[0][1] if len(found) == 1 else "") or (copy.recipient or "")
    if not rcpt:
        return Outcome(copy, 554, "5.1.3 this copy has no recipient address")
    data = _BARE_LF.sub(b"\r\n", copy.data)  # SMTP lines end in CRLF (RFC 5321 2.3.8); a bare LF is not one
    opts = [f"SIZE={len(data)}"] if conn.has_extn("size") else []
    if conn.has_extn("8bitmime") and any(b > 127 for b in data):
        opts.append("BODY=8BITMIME")
    if "SMTPUTF8" in options and conn.has_extn("smtputf8"):
        opts.append("SMTPUTF8")
    resp: bytes | str
    code, resp = conn.mail(envelope_from, opts)
    if code == 250:
        code, resp = conn.rcpt(rcpt)
        if code in (250, 251):
            try:
                code, resp = conn.data(data)
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
        outcomes = [Outcome(c, 451, why, reached=False) for c in copies]
    except (OSError, smtplib.SMTPException) as e:
        why = f"4.4.1 upstream {upstream.host}:{upstream.port} unreachable: {e or type(e).__name__}"
        outcomes = [Outcome(c, 451, why, reached=False) for c in copies]
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
            outcomes.append(Outcome(copy, 451, broken, reached=False))
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


def summary(outcomes: Sequence[Outcome], skipped: int = 0, remembered: bool = True) -> str:
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
    again = "sending the same message again skips them" if remembered else "no Message-ID, so a retry sends them again"
    note = f" ({accepted} accepted: {again})" if accepted else ""
    line = f"{code} {detail} [{len(failed)} of {total} copies refused, first: {first.copy.recipient}]{note}"
    return line[:500]
