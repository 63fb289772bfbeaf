"""urls: the exact URL a browser requests, and the tracked form of it."""

import pytest

from clicktrail.urls import Target, browser_url, is_placeholder, tracked_url


@pytest.mark.parametrize(
    ("href", "requested"),
    [
        ("https://example.com/docs/page?x=1#section-2", "https://example.com/docs/page?x=1#section-2"),
        ("https://files.example.com/shop/Logo App (1).png", "https://files.example.com/shop/Logo%20App%20(1).png"),
        ("https://example.com/wiki/Café?q=naïve", "https://example.com/wiki/Caf%C3%A9?q=na%C3%AFve"),
        ("  https://example.com/a \n", "https://example.com/a"),
        ("https://exa\nmple.com/a\tb", "https://example.com/ab"),
        ("HTTPS://WWW.Example.COM/Path", "https://www.example.com/Path"),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://example.com/a%2Fb+c?q=a+b&x=%20#frag", "https://example.com/a%2Fb+c?q=a+b&x=%20#frag"),
        ("https://example.com/%zz%", "https://example.com/%zz%"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?x=1", "https://example.com/?x=1"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/?b=2&a=1&a=0", "https://example.com/?b=2&a=1&a=0"),
        ("https://example.com/x#a b", "https://example.com/x#a%20b"),
        ("https://example.com/q?it's", "https://example.com/q?it%27s"),
    ],
)
def test_browser_url_is_what_a_browser_requests(href: str, requested: str) -> None:
    assert browser_url(href) == requested


@pytest.mark.parametrize(
    "href", ["mailto:a@example.com", "tel:+123", "sms:+123", "#top", "cid:logo@x", "data:image/png;base64,AA",
             "/relative/path", "relative.html", "ftp://example.com/", "https://", "https://exa mple.com/",
             "javascript:alert(1)", "https://example.com:bad/"],
)
def test_non_http_and_broken_links_are_not_urls(href: str) -> None:
    assert browser_url(href) is None


@pytest.mark.parametrize("value", ["https://example.com/p?email={contactfield=email}", "{{ unsubscribe_url }}",
                                   "*|UNSUB|*", "<%asm_unsubscribe%>", "%%unsubscribe%%", "[[link]]"])
def test_merge_tags_are_placeholders(value: str) -> None:
    assert is_placeholder(value)


def test_tracked_url_keeps_path_query_and_fragment_visible() -> None:
    target = Target("https://shop.example.com/sale/today?id=7&x=%2F#top")
    assert tracked_url("https://clicks.example.com", "T" * 24, target) == (
        "https://clicks.example.com/" + "T" * 24 + "/sale/today?id=7&x=%2F#top"
    )
    assert Target("https://example.com/").visible == ""
    assert Target("https://example.com/?q").visible == "?q"


@pytest.mark.parametrize("href", ["https://exa\x01mple.com/", "https://ex%41mple.com/", "https://a<b>.com/",
                                  "https://a\x00b.com/", "https://[::1/"])
def test_hosts_with_control_or_reserved_characters_are_refused(href: str) -> None:
    assert browser_url(href) is None


def test_ip_hosts_are_kept() -> None:
    assert browser_url("http://[2001:db8::1]:8080/x") == "http://[2001:db8::1]:8080/x"
    assert browser_url("http://192.0.2.1/x") == "http://192.0.2.1/x"
