"""Every route refuses an unauthenticated request, except the tracking routes (click, image, pixel).

The walk reads ``app.url_map``, so a route added later (an API, a dashboard)
is covered without touching this file.  What counts as a refusal, precisely:

* the status is 401, 403 or 404 (404: the feature is disabled or hidden), or
  a redirect (301/302/303/307/308) whose Location is the login page, or, for a
  method that changes state, a 400 (no credentials or CSRF token: nothing done);
* and the body holds none of the stored data (a seeded URL, recipient, tag or
  subject), whatever the status.

The login page is the door, not a room: it may answer 200, but shows no data
and a POST without the password is refused like any other route.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from reliability import log_in, seed
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from clicktrail import apikeys, domains
from clicktrail.tracker import Clicktrail, create_app

PUBLIC = {"tracking.follow"}  # the click, image and pixel routes
DOOR = {"stats.login"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SECRETS = ("https://private.example.com/offer-7f3a", "vip-reader@example.com", "secret-tag-91c2", "Private subject 5e1")


def sample_value(rule: Rule, name: str) -> Any:
    """A plausible value for one URL argument, by the converter that parses it."""
    converter = getattr(rule, "_converters", {}).get(name)
    items = getattr(converter, "items", None)  # any(a, b, ...): one of its words
    if isinstance(items, (set, frozenset, list, tuple)) and items:
        return sorted(items)[0]
    return {"IntegerConverter": 1, "FloatConverter": 1.0, "UUIDConverter": uuid.uuid4(),
            "PathConverter": "a/b.txt"}.get(type(converter).__name__, "x1")


def requests_for(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) for every rule and every method it accepts."""
    adapter = app.url_map.bind("clicks.example.com")
    out = []
    for rule in app.url_map.iter_rules():
        values = {name: sample_value(rule, name) for name in rule.arguments}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = adapter.build(rule.endpoint, values, method=method)
            out.append((rule.endpoint, method, path))
    return out


def refusal(method: str, r: TestResponse, login_path: str | None) -> str | None:
    """None when the response is a refusal as defined above, else what is wrong with it."""
    body = r.get_data(as_text=True)
    leaked = [s for s in SECRETS if s in body]
    if leaked:
        return f"{r.status_code} shows stored data {leaked}"
    if r.status_code in (401, 403, 404):
        return None
    if r.status_code in (301, 302, 303, 307, 308) and login_path and r.location.split("?")[0].endswith(login_path):
        return None
    if r.status_code == 400 and method not in SAFE_METHODS:
        return None
    return f"answered {r.status_code} without authentication"


def walk(app: Flask) -> dict[str, str]:
    """Every non-public route and method that does not refuse, with what it did instead."""
    login_path = None
    if "stats.login" in app.view_functions:
        with app.test_request_context():
            from flask import url_for

            login_path = url_for("stats.login")
    failures = {}
    for endpoint, method, path in requests_for(app):
        if endpoint in PUBLIC or (endpoint in DOOR and method in SAFE_METHODS):
            continue
        r = app.test_client().open(path, method=method, data={"password": "wrong", "csrf": "forged"},
                        headers={"Accept": "application/json"})
        problem = refusal(method, r, login_path)
        if problem:
            failures[f"{method} {path} ({endpoint})"] = problem
    return failures


def test_every_route_but_tracking_refuses_without_login(app: Flask, client: FlaskClient, parts: Clicktrail) -> None:
    copy = seed(parts.store, parts.signer, [SECRETS[0]], recipient=SECRETS[1], tag=SECRETS[2], subject=SECRETS[3])
    assert client.get(copy.path(1)).status_code == 302  # data to leak exists
    assert len(requests_for(app)) > len(PUBLIC)
    assert walk(app) == {}


def test_every_route_refuses_when_the_stats_password_is_unset(settings: dict[str, Any]) -> None:
    app = create_app({**settings, "stats_password": None})
    assert walk(app) == {}


def test_the_login_page_shows_no_data(client: FlaskClient, parts: Clicktrail) -> None:
    copy = seed(parts.store, parts.signer, [SECRETS[0]], recipient=SECRETS[1], tag=SECRETS[2], subject=SECRETS[3])
    client.get(copy.path(1))
    r = client.get("/login")
    assert r.status_code == 200 and not any(s in r.get_data(as_text=True) for s in SECRETS)


def test_tracking_routes_are_the_only_public_ones(app: Flask) -> None:
    assert {endpoint for endpoint, _, _ in requests_for(app)} >= PUBLIC | DOOR


def test_a_route_added_later_is_walked_too(app: Flask, client: FlaskClient, parts: Clicktrail) -> None:
    """The walk is not a list: an unprotected route registered now is caught."""
    seed(parts.store, parts.signer, [SECRETS[0]], recipient=SECRETS[1])

    @app.route("/api/v1/leak/<int:n>", methods=["GET", "DELETE"])
    def leak(n: int) -> str:
        return SECRETS[1]

    failures = walk(app)
    assert set(failures) == {"GET /api/v1/leak/1 (leak)", "DELETE /api/v1/leak/1 (leak)"}


def test_logged_in_the_same_walk_gets_the_pages(client: FlaskClient, settings: dict[str, Any]) -> None:
    """The control: with a session the stats page answers, so the refusals above are the login's doing."""
    log_in(client, settings["stats_password"])
    assert client.get("/stats").status_code == 200


def test_a_click_domain_answers_404_on_every_route_but_tracking(app: Flask, parts: Clicktrail) -> None:
    """A sender's click domain is not a second door: not even a valid API key opens a route there."""
    domains.add(parts.store, "from", "shop.example", "offers.shop.example")
    _, key = apikeys.create(parts.store, "app")
    answered = {}
    for endpoint, method, path in requests_for(app):
        if endpoint in PUBLIC:
            continue
        r = app.test_client().open(path, method=method, base_url="https://offers.shop.example",
                                   headers={"Authorization": f"Bearer {key}"})
        if r.status_code != 404:
            answered[f"{method} {path} ({endpoint})"] = r.status_code
    assert answered == {}
