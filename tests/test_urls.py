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


@pytest.mark.parametrize(
    ("href", "requested"),
    [
        ("https://example.com/../x", "https://example.com/x"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/a/%2e/b/%2E%2e/c", "https://example.com/a/c"),
        ("https://example.com/a/b/.%2E/%2e./c", "https://example.com/c"),
        ("https://example.com/a/..", "https://example.com/"),
        ("https://example.com/a/../", "https://example.com/"),
        ("https://example.com/a/.", "https://example.com/a/"),
        ("https://example.com/.", "https://example.com/"),
        ("https://example.com/../../../etc?x=1#y", "https://example.com/etc?x=1#y"),
        ("https://example.com\\a\\..\\b", "https://example.com/b"),
        ("https://example.com/a/.../b/..c/.d", "https://example.com/a/.../b/..c/.d"),
        ("https://example.com/a/%2e%2f../b", "https://example.com/a/%2e%2f../b"),
        ("https://example.com/p?q=/../x#/../y", "https://example.com/p?q=/../x#/../y"),
    ],
)
def test_dot_segments_are_resolved_as_browsers_do(href: str, requested: str) -> None:
    assert browser_url(href) == requested


@pytest.mark.parametrize("href", ["https://example.com/../x", "https://example.com/a/%2E%2E/%2e%2e/x?y=/../z",
                                  "https://example.com/./", "https://example.com/a/.."])
def test_tracked_link_path_never_climbs_above_the_identifier(href: str) -> None:
    url = browser_url(href)
    assert url is not None
    path = tracked_url("https://clicks.example.com", "T" * 24, Target(url)).split("?")[0].split("/")[4:]
    assert not {".", ".."} & {segment.lower().replace("%2e", ".") for segment in path}


def test_visible_path_of_a_stored_url_with_dot_segments_keeps_the_identifier() -> None:
    assert Target("https://example.com/a/../../b?c=..").visible == "b?c=.."
    assert Target("https://example.com/..").visible == ""


@pytest.mark.parametrize(
    ("href", "requested"),
    [
        ("https://ex\u00adample.com/", "https://example.com/"),  # soft hyphen: ignored by UTS 46
        ("https://ex\u200bample.com/a", "https://example.com/a"),  # zero-width space
        ("https://ex\u2060ample.com/", "https://example.com/"),  # word joiner
        ("https://ex\ufeffample.com/", "https://example.com/"),  # zero-width no-break space
        ("https://ex\u034fample.com/", "https://example.com/"),  # combining grapheme joiner
        ("https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d/", "https://example.com/"),
        ("https://faß.de/", "https://xn--fa-hia.de/"),  # non-transitional: ß is kept
        ("https://BÜCHER.example/", "https://xn--bcher-kva.example/"),
        ("https://例え\u3002テスト/", "https://xn--r8jz45g.xn--zckzah/"),
        ("https://bücher.example.:8080/", "https://xn--bcher-kva.example.:8080/"),
    ],
)
def test_idn_hosts_are_mapped_by_uts46(href: str, requested: str) -> None:
    assert browser_url(href) == requested


@pytest.mark.parametrize(
    "href",
    ["https://ex\u200dample.com/",  # a joiner outside its context: browsers refuse the host
     "https://ex\u200cample.com/",
     "https://a_b.bücher.de/",  # refused by idna (browsers may differ): not tracked rather than guessed
     "https://-x.bücher.de/", "https://bücher..de/", "https://\U0001f600.example/"],
)
def test_idn_hosts_idna_refuses_are_not_tracked(href: str) -> None:
    assert browser_url(href) is None
