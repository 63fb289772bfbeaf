"""stats: never open without a password; shows the counted numbers."""

import re
from typing import Any

from flask.testing import FlaskClient

from clicktrail import aggregate
from clicktrail.messages import track
from clicktrail.tracker import Clicktrail, create_app


def login(client: FlaskClient, password: str) -> Any:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    return client.post("/login", data={"password": password, "csrf": csrf.group(1)})


def test_stats_is_disabled_without_a_password(settings: dict[str, Any]) -> None:
    client = create_app({**settings, "stats_password": None}).test_client()
    resp = client.get("/stats")
    assert resp.status_code == 404 and b"no password is configured" in resp.data
    assert client.post("/login", data={"password": ""}).status_code == 404


def test_stats_needs_login(client: FlaskClient) -> None:
    assert "/login" in client.get("/stats").headers["Location"]
    assert login(client, "wrong").status_code == 401
    assert client.get("/stats").status_code == 302


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    assert client.post("/login", data={"password": "s3cret-pass"}).status_code == 400


def test_stats_show_counts_and_best_links_escaped(client: FlaskClient, parts: Clicktrail) -> None:
    html = b'<body><a href="https://e.com/?q=<script>alert(1)</script>">a</a></body>'
    result = track(parts.store, parts.signer, parts.options, html, ["a@e.com", "b@e.com"])
    link = re.search(r'href="https://clicks\.example\.com([^"]+)"', result.copies[0].data.decode())
    assert link
    client.get(link.group(1).replace("&amp;", "&"))
    client.get(link.group(1).replace("&amp;", "&"))
    assert login(client, "s3cret-pass").status_code == 302
    aggregate.fold(parts.store)  # what the app's timer does every few seconds
    page = client.get("/stats").get_data(as_text=True)
    assert re.search(r'id="messages"><b>2</b>', page)
    assert re.search(r'id="unique-clicks"><b>1</b>', page) and re.search(r'id="total-clicks"><b>2</b>', page)
    assert "<script>alert" not in page and "%3Cscript%3Ealert(1)%3C/script%3E" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf and client.post("/logout", data={"csrf": csrf.group(1)}).status_code == 302
    assert client.get("/stats").status_code == 302


def test_session_cookie_is_httponly_and_lax(client: FlaskClient) -> None:
    resp = login(client, "s3cret-pass")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
