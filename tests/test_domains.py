"""domains: each sender's links on its own click domain, valid there only; no other Host is answered."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BASE
from flask import Flask
from flask.testing import FlaskClient

from clicktrail import apikeys, domains
from clicktrail.cli import main
from clicktrail.errors import BadInput
from clicktrail.messages import track
from clicktrail.tokens import LinkRef, Signer
from clicktrail.tracker import Clicktrail, create_app

OFFERS = "https://offers.shop.example"
PARTNER = "https://go.partner.example"


def message(sender: str, url: str = "https://shop.example/sale?id=7") -> bytes:
    return (f"From: Shop <{sender}>\r\nTo: ann@example.com\r\nSubject: Sale\r\n"
            f"Content-Type: text/html; charset=utf-8\r\n\r\n<a href=\"{url}\">Sale</a>\r\n").encode()


def first_link(data: bytes) -> str:
    found = re.search(rb'<a href="([^"]+)"', data)
    assert found
    return found.group(1).decode()


def split(link: str) -> tuple[str, str]:
    """(base URL, path) of a tracked link."""
    m = re.match(r"(https?://[^/]+)(/.*)", link)
    assert m
    return m.group(1), m.group(2)


@pytest.fixture
def senders(parts: Clicktrail) -> Clicktrail:
    domains.add(parts.store, "from", "shop.example", "offers.shop.example")
    domains.add(parts.store, "login", "partner", PARTNER)
    return parts


# -- choosing the domain --------------------------------------------------------------------------
def test_each_sender_identity_has_its_own_domain_and_others_get_the_default(senders: Clicktrail) -> None:
    store = senders.store
    assert domains.domain_for(store, from_domain="shop.example", default=BASE) == OFFERS
    assert domains.domain_for(store, from_domain="news.shop.example", default=BASE) == OFFERS  # subdomains too
    assert domains.domain_for(store, from_domain="othershop.example", default=BASE) == BASE
    assert domains.domain_for(store, from_domain="example", default=BASE) == BASE
    assert domains.domain_for(store, login="partner", default=BASE) == PARTNER
    assert domains.domain_for(store, login="nobody", from_domain="shop.example", default=BASE) == OFFERS
    assert domains.domain_for(store, default=BASE) == BASE


def test_an_authenticated_identity_comes_before_the_from_header(senders: Clicktrail) -> None:
    domains.add(senders.store, "api_key", "newsletter", "https://news.partner.example")
    store = senders.store
    assert domains.domain_for(store, "shop.example", login="partner", default=BASE) == PARTNER
    assert domains.domain_for(store, "shop.example", "partner", "newsletter", default=BASE) == \
        "https://news.partner.example"


def test_the_more_specific_from_domain_wins(senders: Clicktrail) -> None:
    domains.add(senders.store, "from", "news.shop.example", "https://news.shop.example")
    assert domains.domain_for(senders.store, from_domain="a.news.shop.example", default=BASE) == \
        "https://news.shop.example"
    assert domains.domain_for(senders.store, from_domain="shop.example", default=BASE) == OFFERS


@pytest.mark.parametrize("raw, expected", [
    (b"From: Shop <News@Shop.Example>\r\n\r\nhi", "shop.example"),
    (b"From: news@shop.example.\r\nSubject: x\r\n\r\nhi", "shop.example"),
    (b"From: =?utf-8?q?Caf=C3=A9?= <a@xn--caf-dma.example>\r\n\r\nhi", "xn--caf-dma.example"),
    (b"Subject: no sender\r\n\r\nhi", None),
    (b"From: undisclosed\r\n\r\nhi", None),
    (b"From: a@bad_domain..example\r\n\r\nhi", None),
    (b"<html><body><a href='https://x.example/'>x</a></body></html>", None),
])
def test_the_from_domain_is_read_from_the_header(raw: bytes, expected: str | None) -> None:
    assert domains.from_domain(raw) == expected


def test_track_rewrites_onto_the_senders_click_domain(senders: Clicktrail) -> None:
    own = track(senders.store, senders.signer, senders.options, message("news@shop.example"))
    other = track(senders.store, senders.signer, senders.options, message("news@elsewhere.example"))
    relayed = track(senders.store, senders.signer, senders.options, message("x@elsewhere.example"), login="partner")
    assert (own.click_domain, other.click_domain, relayed.click_domain) == (OFFERS, BASE, PARTNER)
    assert first_link(own.copies[0].data).startswith(OFFERS + "/")
    assert first_link(other.copies[0].data).startswith(BASE + "/")
    assert first_link(relayed.copies[0].data).startswith(PARTNER + "/")
    assert f'src="{OFFERS}/' in own.copies[0].data.decode()  # the open pixel too


# -- where links work ---------------------------------------------------------------------------------
def test_a_link_works_on_its_own_click_domain_only(senders: Clicktrail, client: FlaskClient) -> None:
    link = first_link(track(senders.store, senders.signer, senders.options,
                            message("news@shop.example")).copies[0].data)
    base, path = split(link)
    resp = client.get(path, base_url=base)
    assert (resp.status_code, resp.headers["Location"]) == (302, "https://shop.example/sale?id=7")
    for elsewhere in (BASE, PARTNER, "https://offers.shop.example:8443", "http://127.0.0.1"):
        resp = client.get(path, base_url=elsewhere)
        assert resp.status_code == 404 and "Location" not in resp.headers
    assert len(list(senders.store.events("click"))) == 1


def test_default_domain_links_work_on_the_default_domain_only(senders: Clicktrail, client: FlaskClient) -> None:
    link = first_link(track(senders.store, senders.signer, senders.options, message("a@other.example")).copies[0].data)
    base, path = split(link)
    assert base == BASE
    assert client.get(path).status_code == 302  # the test client's host is the default click domain
    assert client.get(path, base_url=OFFERS).status_code == 404
    assert client.get(path, base_url=PARTNER).status_code == 404


def test_links_minted_before_domains_existed_keep_working(parts: Clicktrail, client: FlaskClient) -> None:
    result = track(parts.store, parts.signer, parts.options, message("a@shop.example"))
    aid = int(result.copies[0].message, 16)
    unbound = parts.signer.mint(aid, 1)  # what every link looked like before hosts were bound
    assert client.get(f"/{unbound}/sale").status_code == 302


def test_an_unknown_host_gets_404_for_everything(senders: Clicktrail, client: FlaskClient) -> None:
    link = first_link(track(senders.store, senders.signer, senders.options, message("a@other.example")).copies[0].data)
    _, path = split(link)
    for target in (path, "/stats", "/login", "/"):
        assert client.get(target, base_url="https://evil.example").status_code == 404
        assert client.get(target, headers={"Host": "evil.example"}).status_code == 404
    assert client.get("/login").status_code == 200  # the default click domain is the dashboard host


def test_a_click_domain_serves_only_tracked_links(senders: Clicktrail, client: FlaskClient) -> None:
    link = first_link(track(senders.store, senders.signer, senders.options,
                            message("news@shop.example")).copies[0].data)
    base, path = split(link)
    assert client.get(path, base_url=base).status_code == 302
    _, key = apikeys.create(senders.store, "app")
    auth = {"Authorization": f"Bearer {key}"}
    for method, target in [("GET", "/login"), ("POST", "/login"), ("GET", "/stats"), ("POST", "/logout"),
                           ("GET", "/stats/tag?tag=x"), ("GET", "/api/domains"), ("GET", "/api/openapi.json"),
                           ("GET", "/api/stats"), ("POST", "/api/messages")]:
        for host in (OFFERS, PARTNER):
            resp = client.open(target, method=method, base_url=host, headers=auth)
            assert resp.status_code == 404, (method, target, host)
        if method == "GET":  # the same on the dashboard host answers
            assert client.get(target, headers=auth).status_code in (200, 302), target
    assert client.get("/api/domains", base_url=OFFERS, headers=auth).get_json()["error"]  # JSON under /api


def test_with_a_dashboard_host_the_default_click_domain_serves_only_tracked_links(settings: dict[str, Any]) -> None:
    app = create_app({**settings, "dashboard_host": "stats.example.com"})
    parts = app.extensions["clicktrail"]
    _, path = split(first_link(track(parts.store, parts.signer, parts.options,
                                     message("a@other.example")).copies[0].data))
    client = app.test_client()
    assert client.get("/login", base_url="https://stats.example.com").status_code == 200
    assert client.get("/login").status_code == 404  # the default click domain
    assert client.get("/api/stats").status_code == 404
    assert client.get(path).status_code == 302  # its links work there, and on the dashboard host
    assert client.get(path, base_url="https://stats.example.com").status_code == 302


def test_host_matching_respects_the_port(settings: dict[str, Any]) -> None:
    settings["click_domain"] = "http://127.0.0.1:8000"
    app = create_app(settings)
    parts = app.extensions["clicktrail"]
    link = first_link(track(parts.store, parts.signer, parts.options, message("a@b.example")).copies[0].data)
    base, path = split(link)
    assert base == "http://127.0.0.1:8000"
    client = app.test_client()
    assert client.get(path, base_url="http://127.0.0.1:8000").status_code == 302
    assert client.get(path, base_url="http://127.0.0.1:9000").status_code == 404
    assert client.get(path, base_url="http://127.0.0.1").status_code == 404


def test_a_default_port_in_the_host_header_is_the_same_host(client: FlaskClient, parts: Clicktrail) -> None:
    link = first_link(track(parts.store, parts.signer, parts.options, message("a@b.example")).copies[0].data)
    _, path = split(link)
    assert client.get(path, headers={"Host": "clicks.example.com:443"}).status_code == 302
    assert client.get(path, headers={"Host": "Clicks.Example.COM"}).status_code == 302


def test_x_forwarded_host_counts_only_behind_trusted_proxies(settings: dict[str, Any]) -> None:
    def app_with(proxies: int) -> Flask:
        return create_app({**settings, "trusted_proxies": proxies})

    untrusting = app_with(0).test_client()
    assert untrusting.get("/login", base_url="http://127.0.0.1:8000",
                          headers={"X-Forwarded-Host": "clicks.example.com"}).status_code == 404
    assert untrusting.get("/login", headers={"X-Forwarded-Host": "evil.example"}).status_code == 200
    trusting = app_with(1).test_client()
    assert trusting.get("/login", base_url="http://127.0.0.1:8000",
                        headers={"X-Forwarded-Host": "clicks.example.com"}).status_code == 200
    assert trusting.get("/login", headers={"X-Forwarded-Host": "evil.example"}).status_code == 404


def test_the_dashboard_host_is_answered_too(settings: dict[str, Any]) -> None:
    app = create_app({**settings, "dashboard_host": "https://Stats.Example.com/"})
    client = app.test_client()
    assert client.get("/login", base_url="https://stats.example.com").status_code == 200
    assert client.get("/login", base_url="https://other.example.com").status_code == 404


def test_a_removed_domain_is_no_longer_answered(senders: Clicktrail, client: FlaskClient) -> None:
    link = first_link(track(senders.store, senders.signer, senders.options,
                            message("news@shop.example")).copies[0].data)
    base, path = split(link)
    assert domains.remove(senders.store, "from", "shop.example")
    assert client.get(path, base_url=base).status_code == 404
    assert not domains.remove(senders.store, "from", "shop.example")
    fresh = track(senders.store, senders.signer, senders.options, message("news@shop.example"))
    assert fresh.click_domain == BASE


# -- tokens -------------------------------------------------------------------------------------------
def test_a_bound_identifier_verifies_on_its_host_only() -> None:
    signer = Signer(b"key-one")
    token = signer.mint(42, 3, "offers.shop.example")
    assert signer.verify(token, "offers.shop.example") == LinkRef(42, 3, "offers.shop.example")
    assert signer.verify(token, "offers.shop.example:8443") is None
    assert signer.verify(token, "clicks.example.com") is None
    assert signer.verify(token) is None
    assert Signer(b"key-two", (b"key-one",)).verify(token, "offers.shop.example") is not None  # after key rotation
    unbound = signer.mint(42, 3)
    assert signer.verify(unbound, "anything.example") == LinkRef(42, 3)  # the caller decides where unbound ones work


# -- the table and its commands -------------------------------------------------------------------------
@pytest.mark.parametrize("base, expected", [
    ("offers.shop.example", "https://offers.shop.example"),
    ("https://Offers.Shop.Example/", "https://offers.shop.example"),
    ("https://offers.shop.example:443", "https://offers.shop.example"),
    ("http://offers.shop.example:8080", "http://offers.shop.example:8080"),
    ("angebote.bücher.example", "https://angebote.xn--bcher-kva.example"),
])
def test_click_domains_are_normalized(base: str, expected: str) -> None:
    assert domains.parse_base(base) == expected


@pytest.mark.parametrize("base", ["", "ftp://x.example", "https://x.example/path", "https://x.example:99999",
                                  "not a domain", "https://-x.example", "https://x.example?q=1"])
def test_bad_click_domains_are_refused(base: str) -> None:
    with pytest.raises(BadInput):
        domains.parse_base(base)


NOT_CLICK_DOMAINS = [  # (domain, what the refusal says): no host that is not a sender's DNS name
    ("localhost", "not a DNS host name"),
    ("https://intranet", "not a DNS host name"),
    ("127.0.0.1", "is an IP address"),
    ("http://10.0.0.7:8080", "is an IP address"),
    ("[::1]", "is an IP address"),
    ("https://[2001:db8::1]", "is an IP address"),
    ("127.1", "not a DNS host name"),
    ("offers_shop.example", "not a DNS host name"),
    ("clicks.example.com", "the tracker's own host"),
    ("http://Clicks.Example.com:8080", "the tracker's own host"),
    ("stats.example.com", "the tracker's own host"),
]


@pytest.mark.parametrize("domain, says", NOT_CLICK_DOMAINS)
def test_a_click_domain_is_a_multi_label_dns_name_other_than_our_own(domain: str, says: str) -> None:
    with pytest.raises(BadInput, match=says):
        domains.click_domain(domain, reserved={"clicks.example.com", "stats.example.com"})
    assert domains.click_domain("offers.shop.example", reserved={"clicks.example.com"}) == OFFERS


@pytest.mark.parametrize("domain, says", NOT_CLICK_DOMAINS)
def test_cli_refuses_hosts_that_are_not_click_domains(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                      parts: Clicktrail, domain: str, says: str) -> None:
    monkeypatch.setenv("CLICKTRAIL_DASHBOARD_HOST", "stats.example.com")
    out = CliRunner().invoke(main, ["domains", "add", domain, "--from", "shop.example"])
    assert out.exit_code == 1 and says in out.output and "Traceback" not in out.output
    assert domains.entries(parts.store) == []


def test_cli_adds_lists_and_removes_domains(env: dict[str, str]) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["domains", "add", "offers.shop.example", "--from", "news@Shop.Example"])
    assert out.exit_code == 0, out.output
    assert "From domain shop.example -> https://offers.shop.example" in out.output
    assert runner.invoke(main, ["domains", "add", PARTNER, "--login", "partner"]).exit_code == 0
    assert runner.invoke(main, ["domains", "add", PARTNER, "--api-key", "newsletter"]).exit_code == 0
    listed = runner.invoke(main, ["domains", "list"]).output.splitlines()
    assert listed == [
        f"default\t\t{BASE}",
        f"api_key\tnewsletter\t{PARTNER}",
        f"login\tpartner\t{PARTNER}",
        "from\tshop.example\thttps://offers.shop.example",
    ]
    out = runner.invoke(main, ["domains", "remove", "--from", "shop.example"])
    assert out.exit_code == 0 and "removed" in out.output
    out = runner.invoke(main, ["domains", "remove", "go.partner.example"])
    assert out.exit_code == 0 and "from 2 sender identities" in out.output
    assert runner.invoke(main, ["domains", "list"]).output.splitlines() == [f"default\t\t{BASE}"]


@pytest.mark.parametrize("args, message", [
    (["add", "offers.shop.example"], "exactly one sender identity"),
    (["add", "offers.shop.example", "--from", "a.example", "--login", "x"], "exactly one sender identity"),
    (["add", "https://x.example/path", "--from", "a.example"], "is not a click domain"),
    (["add", "offers.shop.example", "--from", "not a domain"], "is not a domain name"),
    (["add", "offers.shop.example", "--login", "  "], "the SMTP login is empty"),
    (["remove", "--from", "shop.example"], "has no click domain of its own"),
    (["remove", "nowhere.example"], "is not a configured click domain"),
    (["remove", "x.example", "--login", "y"], "not both"),
])
def test_cli_errors_name_the_problem(env: dict[str, str], args: list[str], message: str) -> None:
    out = CliRunner().invoke(main, ["domains", *args])
    assert out.exit_code != 0 and message in out.output
    assert "Traceback" not in out.output


def test_the_suites_test_client_keeps_its_session_on_the_click_domain(client: FlaskClient) -> None:
    with client.session_transaction() as session:
        session["user"] = "admin"
    assert client.get("/stats").status_code == 200
