"""The SMTP relay against a real aiosmtpd upstream and a real smtplib client, on 127.0.0.1."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner
from conftest import BASE, need
from flask.testing import FlaskClient
from servers import MailSink as Upstream_
from servers import free_port

from clicktrail import config as config_mod
from clicktrail import domains, smtpusers
from clicktrail.cli import main
from clicktrail.delivery import Outcome, Upstream, deliver, summary
from clicktrail.errors import ConfigError
from clicktrail.logstore import Store
from clicktrail.messages import Copy, track
from clicktrail.relay import Relay
from clicktrail.tracker import build

SHOP = "https://shop.example.com/sale?id=7"
TOKEN = re.compile(re.escape(BASE) + r"/([A-Za-z0-9_-]{24})(/[^\"\s>]*)")


def message(extra: str = "", url: str = SHOP, message_id: str | None = "<sale-1@shop.example.com>") -> bytes:
    return (
        "From: Shop <news@shop.example.com>\r\n"
        "To: Customers <list@shop.example.com>\r\n"
        "Subject: Winter sale\r\n"
        + (f"Message-ID: {message_id}\r\n" if message_id else "")
        + f"{extra}"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "\r\n"
        f'<html><body><p>Hello</p><a href="{url}">Sale</a></body></html>\r\n'
    ).encode()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


@pytest.fixture
def cert(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl), as (cert, key) paths."""
    openssl = need("openssl")
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


@pytest.fixture
def upstream(stack: ExitStack) -> Callable[..., Upstream_]:
    """Start an upstream: plain, or with STARTTLS and AUTH required."""

    def start(cert: tuple[str, str] | None = None, login: tuple[str, str] | None = None) -> Upstream_:
        up = Upstream_(free_port())
        kwargs: dict[str, Any] = {}
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            kwargs.update(tls_context=context, require_starttls=True)
        if login:
            def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == login
                if ok:
                    up.logins.append(login[0])
                return AuthResult(success=ok, handled=False)
            kwargs.update(authenticator=check, auth_required=True)
        controller = Controller(up, hostname="127.0.0.1", port=up.port, server_hostname="upstream.test", **kwargs)
        controller.start()
        stack.callback(controller.stop)
        return up

    return start


@pytest.fixture
def relay(settings: dict[str, Any], stack: ExitStack) -> Callable[..., Relay]:
    """Start the relay with these settings over the test's own, on a free loopback port."""

    def start(upstream_port: int, loopback: bool | None = None, **overrides: Any) -> Relay:
        values = {**settings, "smtp_listen": f"127.0.0.1:{free_port()}", "smtp_upstream": f"127.0.0.1:{upstream_port}",
                  "smtp_hostname": "relay.test", **overrides}
        r = Relay(build(config_mod.load(environ={}, overrides=values), serving=True), loopback=loopback)
        r.start()
        stack.callback(r.stop)
        return r

    return start


@pytest.fixture
def store(settings: dict[str, Any]) -> Store:
    return build(config_mod.load(environ={}, overrides=settings)).store


def add_login(store: Store, name: str = "app", password: str = "app-pass", **defaults: bool) -> tuple[str, str]:
    smtpusers.add(store, name, password, **defaults)
    return name, password


def send(relay: Relay, raw: bytes, rcpts: list[str], login: tuple[str, str] | None = ("app", "app-pass"),
         sender: str = "bounces@shop.example.com") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", relay.port, "client.test", timeout=30) as c:
        if login:
            c.login(*login)
        return c.sendmail(sender, rcpts, raw)


def events(store: Store, type_: str) -> list[dict[str, Any]]:
    return list(store.events(type_))


def test_two_recipients_arrive_as_two_rewritten_copies_whose_links_land(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store, client: FlaskClient) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    assert send(r, message("X-Clicktrail-Trackopens: no\r\n"), ["ann@example.com", "bob@example.com"]) == {}

    assert sorted(rcpts[0] for _, rcpts, _ in up.received) == ["ann@example.com", "bob@example.com"]
    tokens = {}
    for sender, rcpts, data in up.received:
        assert sender == "bounces@shop.example.com" and len(rcpts) == 1
        assert b"X-Clicktrail" not in data and b"o.gif" not in data  # the switch was honoured and removed
        assert SHOP.encode() not in data
        (token, shown), = TOKEN.findall(data.decode())
        assert shown == "/sale?id=7"
        tokens[rcpts[0]] = token
    assert tokens["ann@example.com"] != tokens["bob@example.com"]

    for token in tokens.values():
        resp = client.get(f"/{token}/sale?id=7")
        assert resp.status_code == 302 and resp.headers["Location"] == SHOP
    clicks = {e["recipient"]: e["url"] for e in events(store, "click")}
    assert clicks == {"ann@example.com": SHOP, "bob@example.com": SHOP}
    deliveries = events(store, "delivery")
    assert sorted(e["recipient"] for e in deliveries) == ["ann@example.com", "bob@example.com"]
    assert all(re.match(r"250 2\.0\.0 Ok: queued as Q\d", e["detail"]) for e in deliveries)
    assert len(list(store.attempts())) == 2 and events(store, "failure") == []


def test_upstream_down_gives_the_client_451_and_logs_no_delivery(
        relay: Callable[..., Relay], store: Store) -> None:
    r = relay(free_port())  # nothing listens there
    add_login(store)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(r, message(), ["ann@example.com", "bob@example.com"])
    assert e.value.smtp_code == 451 and b"unreachable" in e.value.smtp_error
    assert events(store, "delivery") == []
    failures = events(store, "failure")
    assert sorted(f["recipient"] for f in failures) == ["ann@example.com", "bob@example.com"]
    assert all(f["detail"].startswith("451 4.4.1 upstream 127.0.0.1:") for f in failures)


def test_an_upstream_that_never_answers_gives_451(relay: Callable[..., Relay], store: Store) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        r = relay(silent.getsockname()[1], smtp_upstream_timeout=1)
        add_login(store)
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(r, message(), ["ann@example.com"])
    assert e.value.smtp_code == 451 and b"timed out" in e.value.smtp_error
    assert events(store, "delivery") == [] and len(events(store, "failure")) == 1


def test_an_upstream_refusal_reaches_the_client_with_its_code(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    up.refuse_rcpt["nobody@example.com"] = "550 5.1.1 No such user"
    r = relay(up.port)
    add_login(store)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(r, message(), ["nobody@example.com"])
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.1.1 No such user")
    assert up.received == [] and events(store, "delivery") == []
    assert [f["detail"] for f in events(store, "failure")] == ["550 5.1.1 No such user"]


def test_partly_refused_message_is_refused_and_its_retry_skips_the_copies_delivered(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    up.refuse_rcpt["bob@example.com"] = "450 4.2.0 Mailbox busy"
    r = relay(up.port)
    add_login(store)
    raw = message()
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(r, raw, ["ann@example.com", "bob@example.com"])
    assert e.value.smtp_code == 450
    assert b"1 of 2 copies refused" in e.value.smtp_error and b"1 accepted" in e.value.smtp_error
    assert [rcpts for _, rcpts, _ in up.received] == [["ann@example.com"]]

    del up.refuse_rcpt["bob@example.com"]  # the client retries, as a 4xx tells it to
    assert send(r, raw, ["ann@example.com", "bob@example.com"]) == {}
    assert [rcpts for _, rcpts, _ in up.received] == [["ann@example.com"], ["bob@example.com"]]
    assert sorted(e["recipient"] for e in events(store, "delivery")) == ["ann@example.com", "bob@example.com"]
    assert [e["recipient"] for e in events(store, "failure")] == ["bob@example.com"]
    assert send(r, message("X-Mailer: other\r\n"), ["ann@example.com"]) == {}  # another message is not a retry
    assert len(up.received) == 3


def test_identical_messages_without_message_id_are_each_delivered(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    alert = message(message_id=None)  # a monitoring alert: no Message-ID, no Date, the same bytes each time
    for _ in range(3):
        assert send(r, alert, ["ops@example.com"]) == {}
    assert [rcpts for _, rcpts, _ in up.received] == [["ops@example.com"]] * 3
    assert len(events(store, "delivery")) == 3


def test_a_partial_failure_without_message_id_says_a_retry_sends_again(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    up.refuse_rcpt["bob@example.com"] = "450 4.2.0 Mailbox busy"
    r = relay(up.port)
    add_login(store)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(r, message(message_id=None), ["ann@example.com", "bob@example.com"])
    assert e.value.smtp_code == 450 and b"no Message-ID, so a retry sends them again" in e.value.smtp_error


def test_a_copy_accepted_by_one_upstream_is_not_skipped_by_a_relay_to_another(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up, other = upstream(), upstream()
    add_login(store)
    raw = message()
    assert send(relay(up.port), raw, ["ann@example.com"]) == {}
    with pytest.raises(smtplib.SMTPDataError) as e:  # the same message, through a relay whose upstream is down
        send(relay(free_port()), raw, ["ann@example.com"])
    assert e.value.smtp_code == 451
    assert send(relay(other.port), raw, ["ann@example.com"]) == {}
    assert len(up.received) == 1 and len(other.received) == 1


def test_summary_never_says_250_unless_every_copy_went() -> None:
    ok, c = Outcome(Copy("1" * 16, "a@x", b""), 250, "2.0.0 Ok"), Copy("2" * 16, "b@x", b"")
    assert summary([ok]).startswith("250 ")
    assert summary([ok, Outcome(c, 550, "5.1.1 unknown")]).startswith("550 5.1.1 unknown")
    assert summary([Outcome(c, 550, "5.1.1 x"), Outcome(c, 553, "5.1.3 y")]).startswith("554 5.1.1 x")
    assert summary([Outcome(c, 550, "5.1.1 x"), Outcome(c, 421, "closing")]).startswith("451 4.0.0 closing")
    assert summary([Outcome(c, 503, "bad sequence")]).startswith("554 5.0.0 bad sequence")


@pytest.mark.parametrize(("defaults", "headers", "clicked", "opened"), [
    ({}, "", True, True),
    ({"track_clicks": False}, "", False, True),
    ({"track_clicks": False, "track_opens": False}, "", False, False),
    ({"track_clicks": False}, "X-Clicktrail-Trackclicks: yes\r\n", True, True),
    ({}, "X-Clicktrail-Trackclicks: no\r\nX-Clicktrail-Trackopens: no\r\n", False, False),
])
def test_login_defaults_and_per_message_switches(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store,
        defaults: dict[str, bool], headers: str, clicked: bool, opened: bool) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store, **defaults)
    send(r, message(headers), ["ann@example.com"])
    (_, _, data), = up.received
    assert (SHOP.encode() not in data) is clicked
    assert (b"/o.gif" in data) is opened
    assert b"X-Clicktrail" not in data
    (attempt,) = store.attempts()
    assert (attempt["track_clicks"], attempt["track_opens"]) == (clicked, opened)


def test_a_bad_switch_value_is_refused_with_a_clear_error(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(r, message("X-Clicktrail-Trackclicks: maybe\r\n"), ["ann@example.com"])
    assert e.value.smtp_code == 554 and b"X-Clicktrail-Trackclicks must be yes or no" in e.value.smtp_error
    assert up.received == []


def test_auth_is_required_and_checked(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(r, message(), ["ann@example.com"], login=None)
    assert refused.value.smtp_code == 530
    with pytest.raises(smtplib.SMTPAuthenticationError) as bad:
        send(r, message(), ["ann@example.com"], login=("app", "wrong"))
    assert bad.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(r, message(), ["ann@example.com"], login=("nobody", "app-pass"))
    assert up.received == []
    send(r, message(), ["ann@example.com"])  # AUTH LOGIN or PLAIN, whichever smtplib picks
    assert len(up.received) == 1


def test_loopback_may_be_opened_to_unauthenticated_clients(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port, smtp_loopback_open=True, track_clicks=False)
    send(r, message(), ["ann@example.com"], login=None)
    (_, _, data), = up.received
    assert SHOP.encode() in data and b"/o.gif" in data  # the configured defaults apply without a login


def test_off_loopback_auth_waits_for_starttls_and_upstream_tls_and_auth_are_used(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store,
        cert: tuple[str, str]) -> None:
    up = upstream(cert=cert, login=("relay", "up-pass"))
    with pytest.raises(ConfigError, match="STARTTLS"):
        relay(up.port, loopback=False)
    r = relay(up.port, loopback=False, smtp_tls_cert=cert[0], smtp_tls_key=cert[1], smtp_upstream_tls="starttls",
              smtp_upstream_cafile=cert[0], smtp_upstream_user="relay", smtp_upstream_password="up-pass")
    add_login(store)
    trust = ssl.create_default_context(cafile=cert[0])
    with smtplib.SMTP("127.0.0.1", r.port, "client.test", timeout=30) as c:
        c.ehlo()
        assert not c.has_extn("auth") and c.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            c.login("app", "app-pass")
        with pytest.raises(smtplib.SMTPSenderRefused):
            c.sendmail("bounces@shop.example.com", ["ann@example.com"], message())
        c.starttls(context=trust)
        c.login("app", "app-pass")
        c.sendmail("bounces@shop.example.com", ["ann@example.com"], message())
    assert up.logins == ["relay"] and len(up.received) == 1


def test_dkim_signed_mail_goes_untouched_unless_rewriting_is_allowed(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    up = upstream()
    signed = message("DKIM-Signature: v=1; a=rsa-sha256; d=shop.example.com; s=s1;\r\n h=from:subject; b=AAAA\r\n"
                     "X-Clicktrail-Trackclicks: yes\r\n")
    add_login(store)
    r = relay(up.port)
    send(r, signed, ["ann@example.com", "bob@example.com"])
    forwarded = signed.replace(b"X-Clicktrail-Trackclicks: yes\r\n", b"")  # our switch goes: the signature does not cover it
    assert [data for _, _, data in up.received] == [forwarded, forwarded]  # else byte for byte, one copy each
    assert "DKIM-Signature: forwarded untouched" in caplog.text
    assert {(a["recipient"], a["track_clicks"]) for a in store.attempts()} == {
        ("ann@example.com", False), ("bob@example.com", False)}
    assert len(events(store, "delivery")) == 2

    up.received.clear()
    covered = message("DKIM-Signature: v=1; a=rsa-sha256; d=shop.example.com; s=s1;\r\n"
                      " h=from:subject:X-Clicktrail-Trackclicks; b=AAAA\r\nX-Clicktrail-Trackclicks: yes\r\n")
    send(r, covered, ["ann@example.com"])
    assert [data for _, _, data in up.received] == [covered]  # signed switch headers stay, or the signature breaks
    up.received.clear()
    r2 = relay(up.port, smtp_rewrite_dkim=True)
    send(r2, signed, ["cid@example.com"])
    (_, _, data), = up.received
    assert b"DKIM-Signature" not in data and b" h=from" not in data and SHOP.encode() not in data


def test_unreadable_message_is_forwarded_unchanged(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    broken = (b"From: a@example.com\r\nSubject: cut\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
              b"--XX\r\nContent-Type: text/html\r\n\r\n<a href=\"" + SHOP.encode() + b"\">x</a>\r\n")
    send(r, broken, ["ann@example.com"])
    assert [data for _, _, data in up.received] == [broken]


def test_a_from_header_too_deeply_nested_to_read_is_relayed_tracked_on_the_default_domain(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    deep = message().replace(b"From: Shop <news@shop.example.com>", b"From: " + b"(" * 500)
    assert send(r, deep, ["ann@example.com"]) == {}
    ((_, rcpts, data),) = up.received
    assert rcpts == ["ann@example.com"] and TOKEN.findall(data.decode()) and SHOP.encode() not in data


def test_oversize_and_malformed_input_get_smtp_errors_and_the_relay_keeps_serving(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port, smtp_max_size=4000)
    add_login(store)
    big = message() + (b"x" * 70 + b"\r\n") * 80
    with pytest.raises(smtplib.SMTPSenderRefused) as e:  # SIZE= in MAIL is checked first
        send(r, big, ["ann@example.com"])
    assert e.value.smtp_code == 552
    with smtplib.SMTP("127.0.0.1", r.port, "client.test", timeout=30) as c:
        c.login("app", "app-pass")
        c.mail("bounces@shop.example.com")
        c.rcpt("ann@example.com")
        code, _ = c.data(big)  # no SIZE given: the count while reading finds it
        assert code == 552
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
        f = s.makefile("rwb")
        assert f.readline().startswith(b"220 ")
        for command, reply in [(b"BOGUS", b"500 "), (b"MAIL FROM:<a@example.com>", b"503 "), (b"EHLO x", b"250"),
                               (b"MAIL TO:<a@example.com>", b"501 "), (b"MAIL FROM:<a@example.com>", b"530 "),
                               (b"RCPT TO:<ann@example.com>", b"503 "), (b"DATA", b"503 ")]:
            f.write(command + b"\r\n")
            f.flush()
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            assert line.startswith(reply), (command, line)
    assert up.received == []
    send(r, message(), ["ann@example.com"])
    assert len(up.received) == 1


def test_deliver_sends_tracked_copies_for_callers_other_than_the_relay(
        upstream: Callable[..., Upstream_], settings: dict[str, Any]) -> None:
    up = upstream()
    parts = build(config_mod.load(environ={}, overrides={**settings, "smtp_upstream": f"127.0.0.1:{up.port}",
                                                         "smtp_hostname": "api.test"}))
    result = track(parts.store, parts.signer, parts.options, message(), ["Ann <ann@example.com>", "bob@example.com"])
    outcomes = deliver(parts.store, Upstream.from_config(parts.config), "bounces@shop.example.com", result.copies)
    assert [o.code for o in outcomes] == [250, 250]
    assert [rcpts for _, rcpts, _ in up.received] == [["ann@example.com"], ["bob@example.com"]]
    assert [data for _, _, data in up.received] == [c.data for c in result.copies]


def test_an_address_too_deeply_nested_to_read_fails_its_copy_not_the_session(
        upstream: Callable[..., Upstream_], settings: dict[str, Any]) -> None:
    up = upstream()
    parts = build(config_mod.load(environ={}, overrides={**settings, "smtp_upstream": f"127.0.0.1:{up.port}"}))
    result = track(parts.store, parts.signer, parts.options, message(), ["(" * 500, "bob@example.com"])
    outcomes = deliver(parts.store, Upstream.from_config(parts.config), "bounces@shop.example.com", result.copies)
    assert [o.code for o in outcomes] == [553, 250] and "cannot be read" in outcomes[0].text
    assert [rcpts for _, rcpts, _ in up.received] == [["bob@example.com"]]
    outcomes = deliver(parts.store, Upstream.from_config(parts.config), "(" * 500, result.copies[1:])
    assert [o.code for o in outcomes] == [553] and len(up.received) == 1
    assert [e["detail"][:3] for e in parts.store.events("failure")] == ["553", "553"]  # each logged


def test_relay_settings_are_checked_at_start(settings: dict[str, Any]) -> None:
    parts = build(config_mod.load(environ={}, overrides=settings))
    with pytest.raises(ConfigError, match="SMTP_UPSTREAM is not set"):
        Relay(parts)
    with pytest.raises(ConfigError, match="smtp_listen: bad value"):
        config_mod.load(environ={}, overrides={**settings, "smtp_listen": "localhost"})
    with pytest.raises(ConfigError, match="smtp_upstream_tls"):
        config_mod.load(environ={}, overrides={**settings, "smtp_upstream_tls": "maybe"})


def test_clicktrail_smtp_command_relays_until_sigterm_and_logs_show_deliveries(
        upstream: Callable[..., Upstream_], env: dict[str, str], store: Store) -> None:
    up = upstream()
    port = free_port()
    exe = str(Path(sys.executable).with_name("clicktrail"))
    proc = subprocess.Popen([exe, "smtp", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up.port}"],
                            env={**env, "CLICKTRAIL_SMTP_HOSTNAME": "relay.test", "PATH": "/usr/bin:/bin"},
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while line and not line.startswith("SMTP relay on"):
            line = proc.stderr.readline()
        assert line.startswith(f"SMTP relay on 127.0.0.1:{port}, forwarding to 127.0.0.1:{up.port}")
        add_login(store)
        with smtplib.SMTP("127.0.0.1", port, "client.test", timeout=30) as c:
            c.login("app", "app-pass")
            c.sendmail("bounces@shop.example.com", ["ann@example.com"], message())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(up.received) == 1
    out = CliRunner().invoke(main, ["logs", "deliveries"])
    assert out.exit_code == 0 and '"recipient": "ann@example.com"' in out.output and '"type": "delivery"' in out.output
    assert CliRunner().invoke(main, ["logs", "failures"]).output == ""


def test_a_logins_own_click_domain_carries_the_links_it_relays(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store, client: FlaskClient) -> None:
    partner, offers = "https://news.partner.example", "https://offers.shop.example"
    up = upstream()
    r = relay(up.port)
    add_login(store)
    add_login(store, "other", "other-pass")
    domains.add(store, "login", "app", partner)  # as `clicktrail domains add news.partner.example --login app`
    domains.add(store, "from", "shop.example.com", offers)  # the login comes before the From domain
    send(r, message(), ["ann@example.com"])
    send(r, message(), ["bob@example.com"], login=("other", "other-pass"))

    links = {rcpts[0]: re.findall(r"(https://[a-z.]+)/([A-Za-z0-9_-]{24})/sale", data.decode())
             for _, rcpts, data in up.received}
    ((ann_base, ann_token),) = links["ann@example.com"]
    ((bob_base, bob_token),) = links["bob@example.com"]
    assert (ann_base, bob_base) == (partner, offers)  # the other login falls back to its From domain's
    landed = client.get(f"/{ann_token}/sale?id=7", base_url=partner)
    assert landed.status_code == 302 and landed.headers["Location"] == SHOP
    for elsewhere in (BASE, offers, "https://elsewhere.example"):
        assert client.get(f"/{ann_token}/sale?id=7", base_url=elsewhere).status_code == 404
    assert client.get(f"/{bob_token}/sale?id=7", base_url=offers).status_code == 302


def test_bare_lf_mail_goes_upstream_with_crlf_lines(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    bare = message().replace(b"\r\n", b"\n")  # short: aiosmtpd takes a bare-LF "line" of up to 1,000 octets
    send(r, bare, ["ann@example.com"])  # smtplib sends bytes as they are: bare LFs on the wire
    (_, _, data), = up.received
    assert b"\n" not in data.replace(b"\r\n", b"") and data.count(b"\r\n") >= 8  # the upstream counts lines right
    assert b"https://clicks.example.com/" in data


def test_a_recipient_that_is_no_address_is_refused_at_rcpt(
        upstream: Callable[..., Upstream_], relay: Callable[..., Relay], store: Store) -> None:
    up = upstream()
    r = relay(up.port)
    add_login(store)
    with smtplib.SMTP("127.0.0.1", r.port, "client.test", timeout=30) as c:
        c.login("app", "app-pass")
        c.mail("bounces@shop.example.com")
        assert c.rcpt("not an address")[0] == 553
        assert c.rcpt("@example.com")[0] == 553
        assert c.rcpt("Postmaster")[0] == 250
        assert c.rcpt("ann@example.com")[0] == 250
