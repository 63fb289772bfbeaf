"""Hostile values (HTML/JS, CRLF, NUL, overlong) are stored exactly and shown safely.

Pages: every argument-free GET page of the app is fetched logged in and must
show no payload unescaped, so pages added later (a dashboard) are checked
without editing this file.  Redirects: a stored URL holding CR/LF or NUL never
splits a header.  Raw logs: one valid JSON line per event, values exact.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from reliability import Seeded, log_in, logged, seed
from servers import gunicorn

from clicktrail.messages import track
from clicktrail.tracker import Clicktrail
from clicktrail.urls import browser_url

SCRIPT = '<script>alert("ct")</script>'
IMG = '"><img src=x onerror=alert(1)>'
CRLF = "\r\nSet-Cookie: hijacked=1\r\nX-Injected: 1"
OVERLONG = "A" * 100_000
RAW_MARKERS = ("<script>alert(", "<img src=x onerror")  # what must never appear unescaped in a page

HOSTILE_URLS = [
    f"https://example.com/?q={IMG}{SCRIPT}",
    f"https://example.com/a{CRLF}",
    "https://example.com/nul\x00after",
    "https://example.com/€uro/ünïcode",
    "https://example.com/long?" + OVERLONG,
]


def pages(app: Flask) -> list[str]:
    """Every GET page that takes no arguments, apart from logging in and out."""
    return sorted(str(r.rule) for r in app.url_map.iter_rules()
                  if "GET" in (r.methods or ()) and not r.arguments and r.endpoint not in ("stats.login", "static"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("clicktrail"))
    r = subprocess.run([exe, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def hostile(parts: Clicktrail) -> Seeded:
    """Links stored as given (as an API caller could), bypassing the rewriter's normalisation."""
    return seed(parts.store, parts.signer, HOSTILE_URLS, recipient=f"{SCRIPT}@example.com",
                subject=f"{SCRIPT}{CRLF}\x00", tag=f"{IMG}\x00{CRLF}")


@pytest.mark.parametrize("idx", range(1, len(HOSTILE_URLS) + 1))
def test_redirect_never_splits_a_header(client: FlaskClient, hostile: Seeded, idx: int) -> None:
    r = client.get(hostile.path(idx))
    assert r.status_code == 302
    location = r.headers["Location"]
    assert not any(c in location for c in "\r\n\x00") and location.isascii()
    assert "Set-Cookie" not in r.headers and "X-Injected" not in r.headers
    assert location.startswith("https://example.com/")


@pytest.mark.parametrize("idx", range(1, len(HOSTILE_URLS) + 1))
def test_redirect_goes_where_a_browser_would(client: FlaskClient, hostile: Seeded, idx: int) -> None:
    # A browser drops CR, LF and tab from a URL and percent-encodes NUL, quotes, <> and non-ASCII:
    # following the Location takes the reader exactly where the stored link would.
    location = client.get(hostile.path(idx)).headers["Location"]
    assert browser_url(location) == browser_url(HOSTILE_URLS[idx - 1])


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,<script>x</script>", " \r\n"])
def test_stored_non_http_url_is_never_a_redirect(client: FlaskClient, parts: Clicktrail, url: str,
                                                 env: dict[str, str]) -> None:
    copy = seed(parts.store, parts.signer, [url])
    r = client.get(copy.path(1))
    assert r.status_code == 404 and "Location" not in r.headers
    assert logged(env["CLICKTRAIL_DATABASE"]) == []


@pytest.mark.slow
def test_no_header_split_through_gunicorn(hostile: Seeded, env: dict[str, str]) -> None:
    with gunicorn(env, workers=1) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        for idx in range(1, len(HOSTILE_URLS) + 1):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"GET {hostile.path(idx)} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            head = data.split(b"\r\n\r\n", 1)[0]
            assert head.split(b"\r\n")[0].split()[1] == b"302", head[:200]
            names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n")[1:]]
            assert b"set-cookie" not in names and b"x-injected" not in names
            assert names.count(b"location") == 1


def test_hostile_user_agents_are_stored_exactly(client: FlaskClient, hostile: Seeded, env: dict[str, str]) -> None:
    agents = [SCRIPT, IMG, f"ua{CRLF}", "nul\x00ua", OVERLONG]
    for agent in agents:
        assert client.get(hostile.path(1), environ_base={"HTTP_USER_AGENT": agent}).status_code == 302
    assert [ua for _, ua, _, _ in logged(env["CLICKTRAIL_DATABASE"])] == agents
    r = cli(env, "logs", "clicks")
    rows = [json.loads(line) for line in r.stdout.splitlines()]  # one valid JSON line per event
    assert [row["user_agent"] for row in rows] == agents
    assert {row["tag"] for row in rows} == {f"{IMG}\x00{CRLF}"}
    assert {row["url"] for row in rows} == {HOSTILE_URLS[0]}


def test_hostile_subject_and_tag_through_the_rewriter(parts: Clicktrail, env: dict[str, str]) -> None:
    subject = f"{SCRIPT}{CRLF}\x00"
    encoded = base64.b64encode(subject.encode()).decode()
    raw = (f"From: a@example.com\r\nTo: r@example.com\r\nSubject: =?utf-8?b?{encoded}?=\r\n"
           "Content-Type: text/html; charset=utf-8\r\n\r\n"
           '<a href="https://example.com/x&#13;&#10;Set-Cookie: a=1">go</a>\r\n').encode()
    tag = f"{IMG}{CRLF}\x00" + OVERLONG
    result = track(parts.store, parts.signer, parts.options, raw, ["r@example.com"], tag)
    assert result.prepared.links.links == [("click", "https://example.com/xSet-Cookie:%20a=1")]
    rows = [json.loads(line) for line in cli(env, "logs", "attempts").stdout.splitlines()]
    assert len(rows) == 1
    assert (rows[0]["subject"], rows[0]["tag"]) == (subject, tag)


def crawl(client: FlaskClient, start: list[str], limit: int = 60) -> dict[str, str]:
    """Logged-in pages reachable from ``start`` by same-site links (message and tag pages too): path -> body."""
    seen: dict[str, str] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        page = queue.pop(0)
        if page in seen or page.startswith(("/login", "/logout", "/static")):
            continue
        r = client.get(page, follow_redirects=True)
        assert r.status_code < 500, page
        seen[page] = r.get_data(as_text=True)
        queue += [html.unescape(h) for h in re.findall(r'href="(/[^"/][^"]*)"', seen[page])]
    return seen


def test_pages_show_hostile_values_escaped(app: Flask, client: FlaskClient, hostile: Seeded,
                                         settings: dict[str, Any]) -> None:
    for idx in range(1, len(HOSTILE_URLS) + 1):
        client.get(hostile.path(idx), environ_base={"HTTP_USER_AGENT": SCRIPT})
    log_in(client, settings["stats_password"])
    shown = crawl(client, pages(app))
    assert "/stats" in shown
    for page, body in shown.items():
        for marker in RAW_MARKERS:
            assert marker not in body, (page, marker)
    assert any("&lt;script&gt;alert(" in body for body in shown.values())  # the hostile values are there, escaped
