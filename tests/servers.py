"""Real servers for tests: gunicorn and an SMTP upstream on 127.0.0.1 with a free port, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1, allow_redirects=False)
            return
        except (requests.ConnectionError, requests.Timeout):  # a busy machine boots workers slowly
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s")


@contextmanager
def gunicorn(env: Mapping[str, str], workers: int = 2, port: int | None = None,
             extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``clicktrail.tracker:create_app()`` under gunicorn; yield (base URL, process)."""
    port = port or free_port()
    exe = str(Path(sys.executable).with_name("gunicorn"))
    log = open(os.environ.get("CLICKTRAIL_TEST_SERVER_LOG", os.devnull), "ab")
    proc = subprocess.Popen(
        [exe, "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
         "--no-control-socket", *extra, "clicktrail.tracker:create_app()"],
        # Tests address the server as 127.0.0.1:port: make that its dashboard host, where default links work.
        env={"CLICKTRAIL_DASHBOARD_HOST": f"127.0.0.1:{port}", **os.environ, **env},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        yield base, proc
    finally:
        stop_group(proc)
        log.close()


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server started in its own session: ``sig`` to the group, SIGKILL after 10 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class MailSink:
    """A real upstream mail server (aiosmtpd handler) that records what it receives and refuses what it is told to."""

    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    logins: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), envelope.content))
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"


@contextmanager
def mail_sink(**kwargs: Any) -> Iterator[MailSink]:
    """Run a ``MailSink`` on 127.0.0.1 (``kwargs`` go to aiosmtpd's Controller)."""
    sink = MailSink(free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, server_hostname="upstream.test", **kwargs)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
