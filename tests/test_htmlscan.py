"""htmlscan: exact offsets of tags and attribute values from html5lib's tokenizer."""

from clicktrail.htmlscan import Tag, scan


def tags(text: str) -> list[Tag]:
    return [t for t in scan(text) if isinstance(t, Tag)]


def test_offsets_are_exact_past_the_stock_10240_character_chunk() -> None:
    filler = "<p>" + "x" * 30000 + "</p>\r\n" * 3
    text = filler + '<a class=b href="https://example.com/far">far</a>'
    (a,) = [t for t in tags(text) if t.name == "a" and t.kind == "start"]
    assert text[a.start : a.end] == '<a class=b href="https://example.com/far">'
    vs = a.attrs["href"].value_span
    assert vs is not None and text[vs[0] : vs[1]] == "https://example.com/far"


def test_crlf_offsets_map_back_to_the_original_text() -> None:
    text = '<p>\r\n\r\n</p>\r\n<a\r\n  href="https://example.com/x"\r\n>x</a>\r'
    (a,) = [t for t in tags(text) if t.name == "a" and t.kind == "start"]
    vs = a.attrs["href"].value_span
    assert vs is not None and text[vs[0] : vs[1]] == "https://example.com/x"
    assert text[a.start : a.end].startswith("<a") and text[a.end - 1] == ">"


def test_attribute_forms_single_double_unquoted_and_entities() -> None:
    text = "<a x=1 HREF='https://e.com/?a=1&amp;b=2' title=\"t\" data-x=un&amp;q>y</a>"
    (a,) = [t for t in tags(text) if t.kind == "start"]
    href = a.attrs["href"]
    assert href.value == "https://e.com/?a=1&b=2" and href.quote == "'"
    assert href.value_span and text[href.value_span[0] : href.value_span[1]] == "https://e.com/?a=1&amp;b=2"
    assert a.attrs["data-x"].quote == "" and a.attrs["data-x"].value == "un&q"


def test_duplicate_attributes_first_one_wins_like_browsers() -> None:
    text = '<a href="https://first.example/" href="https://second.example/">x</a>'
    (a,) = [t for t in tags(text) if t.kind == "start"]
    vs = a.attrs["href"].value_span
    assert vs and text[vs[0] : vs[1]] == "https://first.example/"


def test_style_and_script_contents_are_raw_text() -> None:
    text = '<style>a[href="<a href=x>"]{}</style><script>var s="<a href=\'y\'>";</script><a href="z">z</a>'
    starts = [t for t in tags(text) if t.kind == "start" and t.name == "a"]
    assert len(starts) == 1 and starts[0].attrs["href"].value == "z"


def test_conditional_comment_bodies_are_tokenized_again() -> None:
    text = '<!--[if mso]><v:roundrect href="https://e.com/mso" arcsize="5%"><w:anchorlock/></v:roundrect><![endif]-->'
    vml = [t for t in tags(text) if t.name == "v:roundrect" and t.kind == "start"]
    assert len(vml) == 1 and vml[0].in_comment
    vs = vml[0].attrs["href"].value_span
    assert vs and text[vs[0] : vs[1]] == "https://e.com/mso"


def test_plain_comments_are_not_tokenized() -> None:
    text = '<!-- <a href="https://hidden.example/">x</a> --><a href="https://shown.example/">y</a>'
    starts = [t for t in tags(text) if t.kind == "start"]
    assert [t.attrs["href"].value for t in starts] == ["https://shown.example/"]


def test_a_tag_cut_off_by_the_end_of_the_text_is_not_reported() -> None:
    assert [t for t in tags('<p>x</p><a href="https://e.com/') if t.kind == "start" and t.name == "a"] == []


def test_end_is_where_appended_markup_is_still_markup() -> None:
    from clicktrail.htmlscan import End

    def end(text: str) -> int:
        (e,) = [i for i in scan(text) if isinstance(i, End)]
        return e.at

    assert end("<p>x</p>") == 8
    assert end("<p>x</p><!-- cut") == end("<p>x</p><textarea>cut") == end("<p>x</p><a href='cut") == 8
    assert end("<p>x</p><!-- closed --><style>a{}</style>") == 41
    assert end("<p>\r\n</p>\r\n<!--") == 11  # mapped back through CRLF


def test_conditional_comment_text_is_marked_and_starts_after_its_condition() -> None:
    from clicktrail.htmlscan import Text

    texts = [(t.data, t.in_comment) for t in scan("a<!--[if mso]>b<![endif]-->c") if isinstance(t, Text)]
    assert texts == [("a", False), ("b", True), ("c", False)]
