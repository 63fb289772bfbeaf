"""rewrite: which URLs are tracked, and that nothing else changes."""

import re

import pytest

from clicktrail.rewrite import PIXEL_ATTRS, LinkTable, Options, html_template, looks_like_address, text_template

BASE = "https://clicks.example.com"
TOKEN = "T" * 24
OPTS = Options(BASE)
NO_PIXEL = Options(BASE, track_opens=False)


def rewrite_html(html: str, opts: Options = OPTS) -> tuple[str, LinkTable]:
    links = LinkTable()
    return html_template(html, links, opts).render(lambda idx: TOKEN), links


def test_link_becomes_tracked_url_with_visible_path() -> None:
    out, links = rewrite_html('<a href="https://shop.example.com/sale?id=7#top">Sale</a>', NO_PIXEL)
    assert out == f'<a href="{BASE}/{TOKEN}/sale?id=7#top">Sale</a>'
    assert links.links == [("click", "https://shop.example.com/sale?id=7#top")]


def test_area_href_and_img_src_are_tracked() -> None:
    out, links = rewrite_html('<map><area href="https://e.com/a"></map><img src="https://e.com/i.png">', NO_PIXEL)
    assert out == f'<map><area href="{BASE}/{TOKEN}/a"></map><img src="https://e.com/i.png">'
    out, links = rewrite_html('<img src="https://e.com/i.png">')
    assert links.links == [("image", "https://e.com/i.png")]
    assert out.startswith(f'<img src="{BASE}/{TOKEN}/i.png">')


@pytest.mark.parametrize(
    "href",
    ["mailto:a@example.com", "tel:+15551234", "sms:+15551234", "#section", "cid:logo@x", "data:image/gif;base64,R0",
     "/relative", "page.html", "{{ unsubscribe_url }}", "https://e.com/p?email={contactfield=email}", "*|UNSUB|*",
     "<%asm_url%>", "%%view_online%%", "{unsubscribe}"],
)
def test_left_byte_identical(href: str) -> None:
    html = f'<a href="{href}" class=x>go</a>'
    out, links = rewrite_html(html, NO_PIXEL)
    assert out == html and links.links == []


@pytest.mark.parametrize(
    "marker", ['clicktracking="off"', "data-pm-no-track", "mc:disable-tracking", "ses:no-track",
               'CLICKTRACKING="OFF"'],
)
def test_vendor_opt_out_markers_leave_the_link_alone(marker: str) -> None:
    html = f'<a {marker} href="https://e.com/x">go</a>'
    assert rewrite_html(html, NO_PIXEL)[0] == html


def test_our_opt_out_marker_is_removed_and_the_link_left_alone() -> None:
    out, links = rewrite_html('<a href="https://e.com/x" data-clicktrail="off" class="b">go</a>', NO_PIXEL)
    assert out == '<a href="https://e.com/x" class="b">go</a>' and links.links == []


@pytest.mark.parametrize("text", ["https://e.com/x", "www.e.com", "e.com", " E.COM/path ", "http://e.com"])
def test_scam_prevention_leaves_links_whose_text_is_an_address(text: str) -> None:
    html = f'<a href="https://evil.example.net/x">{text}</a>'
    assert rewrite_html(html, NO_PIXEL)[0] == html
    off = Options(BASE, track_opens=False, scam_protection=False)
    assert rewrite_html(html, off)[0] != html


@pytest.mark.parametrize("text", ["Shop now", "Read more…", "", "v1.2 notes", "Click here: our site"])
def test_ordinary_link_text_is_tracked(text: str) -> None:
    assert not looks_like_address(text)
    assert TOKEN in rewrite_html(f'<a href="https://e.com/x">{text}</a>', NO_PIXEL)[0]


def test_scam_check_sees_text_inside_nested_markup() -> None:
    html = '<a href="https://e.com/x"><span><b>www.bank.example</b></span></a>'
    assert rewrite_html(html, NO_PIXEL)[0] == html


def test_entities_are_decoded_and_the_new_value_escaped() -> None:
    out, links = rewrite_html('<a href="https://e.com/r?key=1&amp;id=2&#038;z=3">x</a>', NO_PIXEL)
    assert links.links == [("click", "https://e.com/r?key=1&id=2&z=3")]
    assert out == f'<a href="{BASE}/{TOKEN}/r?key=1&amp;id=2&amp;z=3">x</a>'


def test_entity_without_semicolon_before_equals_stays_literal_like_browsers() -> None:
    _, links = rewrite_html('<a href="https://e.com/?a=1&region=eu&currency=EUR">x</a>', NO_PIXEL)
    assert links.links == [("click", "https://e.com/?a=1&region=eu&currency=EUR")]


def test_single_quoted_and_unquoted_values_keep_their_quoting() -> None:
    out, _ = rewrite_html("<a href='https://e.com/a'>x</a><a href=https://e.com/b>y</a>", NO_PIXEL)
    assert out == f"<a href='{BASE}/{TOKEN}/a'>x</a><a href={BASE}/{TOKEN}/b>y</a>"


def test_vml_button_inside_conditional_comment_is_tracked_and_markup_kept() -> None:
    html = ('<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://e.com/offer?id=7&src=mso"'
            ' arcsize="10%"><w:anchorlock/><center>Go</center></v:roundrect><![endif]-->'
            '<a href="https://e.com/offer?id=7&amp;src=web">Go</a>')
    out, links = rewrite_html(html, NO_PIXEL)
    assert links.links == [("click", "https://e.com/offer?id=7&src=mso"), ("click", "https://e.com/offer?id=7&src=web")]
    masked = re.sub(r'href="[^"]*"', 'href=""', out)
    assert masked == re.sub(r'href="[^"]*"', 'href=""', html)


def test_same_url_twice_is_one_link() -> None:
    _, links = rewrite_html('<a href="https://e.com/a">1</a><a href="https://e.com/a">2</a>', NO_PIXEL)
    assert links.links == [("click", "https://e.com/a")]


def test_pixel_goes_before_the_last_body_end_tag_case_insensitively() -> None:
    out, _ = rewrite_html("<html><BODY><p>x</p></BODY></html>")
    assert re.fullmatch(rf'<html><BODY><p>x</p><img src="{BASE}/{TOKEN}/o\.gif"[^>]*></BODY></html>', out)


def test_pixel_goes_at_the_end_without_body_and_exactly_once() -> None:
    out, _ = rewrite_html("<p>fragment</p>")
    assert out.startswith("<p>fragment</p><img src=") and out.count("<img") == 1


def test_pixel_ignores_body_end_tags_in_comments_and_scripts() -> None:
    out, _ = rewrite_html("<body><script>x='</body>'</script><!-- </body> --><p>y</p></body>")
    assert out.endswith(f"{PIXEL_ATTRS}></body>")
    assert out.count("<img") == 1


def test_switches_off_change_nothing() -> None:
    html = '<body><a href="https://e.com/a">a</a><img src="https://e.com/i.png"></body>'
    assert rewrite_html(html, Options(BASE, track_clicks=False, track_opens=False))[0] == html


def test_unchanged_document_is_identical_including_crlf_and_odd_bytes() -> None:
    html = "<!DOCTYPE html>\r\n<p>caf\udce9 &nbsp; &copy</p>\r\n<a href=mailto:x@e.com>m</a>\r\n"
    assert rewrite_html(html, NO_PIXEL)[0] == html


def test_already_tracked_links_are_not_tracked_twice() -> None:
    html = f'<a href="{BASE}/{TOKEN}/x">x</a>'
    assert rewrite_html(html, NO_PIXEL)[0] == html


def rewrite_text(text: str) -> tuple[str, LinkTable]:
    links = LinkTable()
    return text_template(text, links, OPTS).render(lambda idx: TOKEN), links


def test_plain_text_bare_and_bracketed_urls() -> None:
    text = "Reset here:\n\n<https://e.com/wp-login.php?action=rp&key=K&login=u>\n\nSee https://e.com/page.\n"
    out, links = rewrite_text(text)
    assert out == (f"Reset here:\n\n<{BASE}/{TOKEN}/wp-login.php?action=rp&key=K&login=u>\n\n"
                   f"See {BASE}/{TOKEN}/page.\n")
    assert links.links == [("click", "https://e.com/wp-login.php?action=rp&key=K&login=u"), ("click", "https://e.com/page")]


@pytest.mark.parametrize(
    ("text", "url"),
    [("(see https://e.com/a)", "https://e.com/a"), ("https://e.com/wiki/A_(b)", "https://e.com/wiki/A_(b)"),
     ("go: https://e.com/x?y=1, then", "https://e.com/x?y=1"), ('"https://e.com/q"', "https://e.com/q"),
     ("https://e.com/end!", "https://e.com/end")],
)
def test_plain_text_trailing_punctuation_is_not_part_of_the_url(text: str, url: str) -> None:
    assert rewrite_text(text)[1].links == [("click", url)]


EVIL = "https://evil.example.net/x"


@pytest.mark.parametrize(
    "html",
    [f'<!--[if mso]><a href="{EVIL}">www.bank.com</a><![endif]-->',
     f'<!--[if mso]><v:roundrect href="{EVIL}" arcsize="10%"><center>bank.com</center></v:roundrect><![endif]-->',
     # the VML button opened in one comment, its text outside, closed in another (buttons.cm style)
     f'<!--[if mso]><v:roundrect href="{EVIL}"><center><![endif]--><a href="{EVIL}">https://bank.com</a>'
     '<!--[if mso]></center></v:roundrect><![endif]-->',
     f'<a href="{EVIL}"><!--[if mso]>www.bank.com<![endif]--></a>',  # what Outlook shows
     f'<a href="{EVIL}">10.0.0.1</a>', f'<a href="{EVIL}">&lt;https://bank.com&gt;</a>',
     f'<a href="{EVIL}">bank&#8203;.com</a>', f'<a href="{EVIL}">bank&shy;.com</a>'],
)
def test_scam_prevention_also_inside_conditional_comments_and_for_disguised_addresses(html: str) -> None:
    out, links = rewrite_html(html, NO_PIXEL)
    assert out == html and links.links == []


def test_links_in_conditional_comments_with_ordinary_text_are_still_tracked() -> None:
    html = (f'<!--[if mso]><v:roundrect href="{EVIL}"><center>Log in</center></v:roundrect>'
            f'<a href="{EVIL}">Log in</a><![endif]--><v:oval href="{EVIL}"/>')
    out, links = rewrite_html(html, NO_PIXEL)
    assert out.count(f"{BASE}/{TOKEN}/x") == 3 and links.links == [("click", EVIL)]


@pytest.mark.parametrize("text", ["report.pdf", "index.html", "Node.js", "St.Louis"])
def test_file_names_and_dotted_words_are_not_taken_for_hosts(text: str) -> None:
    assert TOKEN in rewrite_html(f'<a href="https://e.com/x">{text}</a>', NO_PIXEL)[0]


@pytest.mark.parametrize(
    ("html", "kept"),
    [('<a href="https://e.com/x" data-clicktrail="off">go</a>', '<a href="https://e.com/x">go</a>'),
     ('<img data-clicktrail="off" src="https://e.com/i.png" alt="">', '<img src="https://e.com/i.png" alt="">'),
     ('<a name="top" data-clicktrail=OFF>x</a>', '<a name="top">x</a>'),
     ("<p data-clicktrail='off'>t</p>", "<p>t</p>"),
     ('<!--[if mso]><v:rect data-clicktrail="off" href="https://e.com/v"/><![endif]-->',
      '<!--[if mso]><v:rect href="https://e.com/v"/><![endif]-->')],
)
@pytest.mark.parametrize("opts", [Options(BASE), Options(BASE, track_clicks=False, track_opens=False),
                                  Options(BASE, track_clicks=False), Options(BASE, track_opens=False)])
def test_our_marker_is_always_removed(html: str, kept: str, opts: Options) -> None:
    out, links = rewrite_html(html, opts)
    assert "data-clicktrail" not in out and out.startswith(kept) and links.links == []


def test_marker_with_another_value_is_left_alone() -> None:
    html = '<a data-clicktrail="on" href="https://e.com/x">go</a>'
    assert rewrite_html(html, NO_PIXEL)[0] == f'<a data-clicktrail="on" href="{BASE}/{TOKEN}/x">go</a>'


def test_no_pixel_when_asked_for_none() -> None:
    links = LinkTable()
    out = html_template("<body><p>x</p></body>", links, OPTS, pixel=False).render(lambda idx: TOKEN)
    assert out == "<body><p>x</p></body>"


PIXEL = f'<img src="{BASE}/{TOKEN}/o.gif" {PIXEL_ATTRS}>'


@pytest.mark.parametrize(
    ("html", "at"),
    [("<p>x</p><!-- footer", 8), ("<p>x</p><!--[if mso]><v:rect/>", 8), ("<p>x</p><textarea>y", 8),
     ("<p>x</p><title>t", 8), ("<p>x</p><style>p{}", 8), ("<p>x</p><script>1<2", 8), ("<p>x</p><plaintext>z", 8),
     ("<p>x</p><div class='a", 8), ("<p>x</p><br", 8), ("<p>x</p></", 8), ("<p>x</p><!doc", 8),
     ("<p>x</p>\r\n<!--\r\nz", 10),
     ("<p>x</p><!-- done --><textarea>y</textarea>", 43), ("<p>x</p><!---->", 15), ("a < b", 5), ("a <", 3)],
)
def test_pixel_goes_before_a_construct_the_end_cuts_off(html: str, at: int) -> None:
    out, _ = rewrite_html(html)
    assert out == html[:at] + PIXEL + html[at:]
