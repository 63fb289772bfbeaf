"""linktext: which visible link texts read as an address (scam prevention)."""

import pytest

from clicktrail.linktext import looks_like_address, top_level_domains


@pytest.mark.parametrize(
    "text",
    ["https://e.com/x", "www.e.com", "e.com", " E.COM/path ", "http://e.com",
     "https://192.168.0.1/login", "10.0.0.1", "http://10.0.0.1:8080/", "192.168.0.1/admin", "0x7f.0.0.1",
     "[2001:db8::1]", "http://[::1]:8080/x",
     "<https://bank.com>", "(bank.com)", "[bank.com]", "\u201cbank.com\u201d", "bank.com.", "«www.bank.com»",
     "bank\u200b.com", "bank\u00ad.com", "b\u200dank.co\u200cm", "\u2060bank.com\ufeff", "bank\u200e.com",
     "\uff42\uff41\uff4e\uff4b\uff0e\uff43\uff4f\uff4d", "bank\u3002com",
     "bücher.de", "пример.рф", "bank.example", "portal.test",
     "readme.md", "archive.zip", "clip.mov", "bank.com.pdf", "St.Louis.MO", "secure.login:8443",
     "www.bank.notatld"],
)
def test_addresses_are_recognised(text: str) -> None:
    assert looks_like_address(text)


@pytest.mark.parametrize(
    "text",
    ["Shop now", "Read more…", "", "v1.2 notes", "Click here: our site", "report.pdf", "index.html", "Node.js",
     "St.Louis", "Mr.Smith", "slides.pptx", "data.json", "e.g.", "3.14", "1.2.3", "10:30", "Zürich.Café",
     "ann@bank.com", "Go to bank.com now"],
)
def test_ordinary_text_is_not_an_address(text: str) -> None:
    assert not looks_like_address(text)


@pytest.mark.parametrize("word", ["pdf", "html", "htm", "js", "louis", "smith", "pptx", "json", "xn--caf-dma"])
def test_the_words_let_through_are_not_top_level_domains(word: str) -> None:
    assert word not in top_level_domains()


def test_the_top_level_domain_list_is_the_whole_root_zone() -> None:
    tlds = top_level_domains()
    assert len(tlds) > 1400
    assert {"com", "de", "md", "zip", "mov", "xn--p1ai", "bank"} <= tlds
