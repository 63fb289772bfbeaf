"""/api/domains, and the click domain of an API key applied to the messages it submits."""

from __future__ import annotations

import email
import json
import re
from typing import Any

import pytest
from conftest import BASE
from flask.testing import FlaskClient

from clicktrail import apikeys, domains
from clicktrail.tracker import Clicktrail

PARTNER = "https://news.partner.example"
SHOP = "https://shop.example.com/sale?id=7"
HTML = f'<p><a href="{SHOP}">Sale</a></p>'


@pytest.fixture
def auth(parts: Clicktrail) -> dict[str, str]:
    return {"Authorization": f"Bearer {apikeys.create(parts.store, 'newsletter')[1]}"}


def link_tokens(mime: str, base: str) -> list[str]:
    """The identifiers of the tracked links onto ``base`` in a message's decoded text."""
    msg = email.message_from_string(mime)
    texts = [p.get_payload(decode=True) for p in msg.walk() if p.get_content_maintype() == "text"]
    text = "\n".join(t.decode() for t in texts if isinstance(t, bytes))
    return re.findall(re.escape(base) + r"/([A-Za-z0-9_-]{24})/sale", text)


def test_add_list_and_remove_click_domains(client: FlaskClient, auth: dict[str, str], parts: Clicktrail) -> None:
    resp = client.post("/api/domains", headers=auth, json={"domain": "news.partner.example", "api_key": "newsletter"})
    assert resp.status_code == 201
    assert resp.get_json() | {"added": None} == {"kind": "api_key", "value": "newsletter", "domain": PARTNER,
                                                "host": "news.partner.example", "added": None}
    resp = client.post("/api/domains", headers=auth, data={"domain": "http://offers.shop.example:8080",
                                                           "from": "Shop.Example."})
    assert resp.status_code == 201 and resp.get_json()["value"] == "shop.example"
    assert client.post("/api/domains", headers=auth, json={"domain": PARTNER, "login": "app"}).status_code == 201

    listed = client.get("/api/domains", headers=auth).get_json()
    assert listed["default"] == BASE
    assert [(d["kind"], d["value"], d["domain"]) for d in listed["domains"]] == [
        ("api_key", "newsletter", PARTNER), ("login", "app", PARTNER), ("from", "shop.example", "http://offers.shop.example:8080")]
    assert [(e.kind, e.value) for e in domains.entries(parts.store)] == [
        (d["kind"], d["value"]) for d in listed["domains"]]  # the same table as `clicktrail domains list`

    resp = client.delete("/api/domains?from=shop.example", headers=auth)
    assert resp.status_code == 200 and resp.get_json() == {"removed": 1}
    resp = client.delete("/api/domains/news.partner.example", headers=auth)
    assert resp.status_code == 200 and resp.get_json() == {"removed": 2}
    assert client.get("/api/domains", headers=auth).get_json()["domains"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"api_key": "newsletter"}, "domain"),
    ({"domain": "news.partner.example"}, None),
    ({"domain": "news.partner.example", "from": "shop.example", "login": "app"}, "login"),
    ({"domain": "news.partner.example", "color": "red"}, "color"),
    ({"domain": "not a domain", "login": "app"}, "domain"),
    ({"domain": "https://[::1", "login": "app"}, "domain"),
    ({"domain": "ftp://news.partner.example", "login": "app"}, "domain"),
    ({"domain": 5, "login": "app"}, "domain"),
    ({"domain": "news.partner.example", "from": "bad domain!"}, "from"),
    ({"domain": "news.partner.example", "login": " "}, "login"),
    ({"domain": "news.partner.example", "login": None}, "login"),
    ({"domain": "news.partner.example", "api_key": "a\nb"}, "api_key"),
    ({"domain": "news.partner.example", "api_key": "\udc80"}, "api_key"),
])
def test_bad_additions_are_a_400_naming_the_field(client: FlaskClient, auth: dict[str, str], parts: Clicktrail,
                                                  body: dict[str, Any], field: str | None) -> None:
    resp = client.post("/api/domains", headers=auth, data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["field"] == field and resp.get_json()["error"]
    assert domains.entries(parts.store) == []


@pytest.mark.parametrize("domain", ["localhost", "127.0.0.1", "http://[::1]:8000", "10.1.2.3", "intranet",
                                    "clicks.example.com", "https://CLICKS.example.com:8443", "under_score.example"])
def test_hosts_that_are_not_a_senders_dns_name_are_a_400(client: FlaskClient, auth: dict[str, str],
                                                         parts: Clicktrail, domain: str) -> None:
    resp = client.post("/api/domains", headers=auth, json={"domain": domain, "from": "shop.example"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "domain"
    assert any(says in resp.get_json()["error"] for says in ("IP address", "DNS host name", "tracker's own host"))
    assert domains.entries(parts.store) == []


@pytest.mark.parametrize(("path", "status", "field"), [
    ("/api/domains?login=nobody", 404, None),
    ("/api/domains/unknown.example", 404, None),
    ("/api/domains", 400, None),
    ("/api/domains?login=a&api_key=b", 400, "api_key"),
    ("/api/domains?color=red", 400, "color"),
    ("/api/domains?from=bad%20domain", 400, "from"),
    ("/api/domains/bad%20domain", 400, "domain"),
])
def test_bad_removals_answer_json_errors(client: FlaskClient, auth: dict[str, str],
                                         path: str, status: int, field: str | None) -> None:
    resp = client.delete(path, headers=auth)
    assert resp.status_code == status and resp.get_json()["error"]
    assert resp.get_json()["field"] == field


@pytest.mark.parametrize(("method", "path"), [("get", "/api/domains"), ("post", "/api/domains"),
                                              ("delete", "/api/domains?login=app"), ("delete", "/api/domains/x.example")])
def test_domains_need_a_key(client: FlaskClient, method: str, path: str) -> None:
    resp = getattr(client, method)(path, json={"domain": "x.example", "login": "app"})
    assert resp.status_code == 401 and resp.get_json()["error"]


def test_other_content_types_and_methods_are_refused_in_json(client: FlaskClient, auth: dict[str, str]) -> None:
    resp = client.post("/api/domains", headers=auth, data="domain=x", content_type="text/plain")
    assert resp.status_code == 415 and resp.get_json()["error"]
    resp = client.get("/api/domains/x.example", headers=auth)
    assert resp.status_code == 405 and resp.headers["Allow"] == "DELETE"


def test_an_api_keys_click_domain_carries_its_messages_links(client: FlaskClient, auth: dict[str, str]) -> None:
    # As `clicktrail domains add news.partner.example --api-key newsletter` does.
    assert client.post("/api/domains", headers=auth, json={"domain": PARTNER, "api_key": "newsletter"}).status_code == 201
    resp = client.post("/api/messages", headers=auth, json={"html": HTML, "recipients": "ann@example.com"})
    assert resp.status_code == 200
    mime = resp.get_json()["messages"][0]["mime"]
    (token,) = link_tokens(mime, PARTNER)
    assert link_tokens(mime, BASE) == []

    landed = client.get(f"/{token}/sale?id=7", base_url=PARTNER)
    assert landed.status_code == 302 and landed.headers["Location"] == SHOP
    assert client.get(f"/{token}/sale?id=7", base_url=BASE).status_code == 404  # the default click domain
    assert client.get(f"/{token}/sale?id=7", base_url="https://elsewhere.example").status_code == 404


def test_another_keys_messages_keep_the_default_click_domain(client: FlaskClient, auth: dict[str, str],
                                                            parts: Clicktrail) -> None:
    domains.add(parts.store, "api_key", "newsletter", PARTNER)
    other = {"Authorization": f"Bearer {apikeys.create(parts.store, 'billing')[1]}"}
    resp = client.post("/api/messages", headers=other, json={"html": HTML, "recipients": "ann@example.com"})
    mime = resp.get_json()["messages"][0]["mime"]
    (token,) = link_tokens(mime, BASE)
    assert client.get(f"/{token}/sale?id=7").status_code == 302
    assert client.get(f"/{token}/sale?id=7", base_url=PARTNER).status_code == 404


@pytest.mark.parametrize("body", [{"domain": "x" * 500_000, "from": "shop.example"},
                                  {"domain": "offers.example.com", "from": "(" * 500_000},
                                  {"domain": "offers.example.com", "from": "shop.example", "y" * 500_000: 1}])
def test_an_error_quotes_a_long_bad_value_cut_short(client: FlaskClient, auth: dict[str, str],
                                                    body: dict[str, Any]) -> None:
    resp = client.post("/api/domains", json=body, headers=auth)
    assert resp.status_code == 400 and len(resp.get_data()) < 1000, resp.get_data()[:300]


@pytest.mark.parametrize(("body", "content_type", "field"), [
    (b"domain=offers.%ff.example&from=shop.example", "application/x-www-form-urlencoded", "domain"),
    (b"domain=offers.example.com" + b"&from=shop.example" * 2000, "application/x-www-form-urlencoded", "from"),
    (b'--zz\r\nContent-Disposition: form-data; name="domain"\r\n\r\n\xff\r\n--zz--\r\n',
     "multipart/form-data; boundary=zz", "domain"),
])
def test_form_bodies_are_read_exactly_and_refused_naming_the_field(
        client: FlaskClient, auth: dict[str, str], body: bytes, content_type: str, field: str) -> None:
    resp = client.post("/api/domains", data=body, headers={**auth, "Content-Type": content_type})
    assert resp.status_code == 400 and resp.get_json()["field"] == field, resp.get_json()
