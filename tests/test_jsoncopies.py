"""jsoncopies: the JSON text of every copy is exactly json.dumps's, however the copies differ."""

import json
import random
import string

from clicktrail.jsoncopies import Escaper

TEMPLATE = 'Subject: caf\u00e9 "news"\r\n\r\n<a href="https://c.example.com/{}/x?a=1&b=2">\\ go</a>\t{}\r\n'


def ident(rnd: random.Random) -> str:
    return "".join(rnd.choice(string.ascii_letters + string.digits + "-_") for _ in range(24))


def test_copies_differing_in_identifiers_are_escaped_exactly_and_by_the_fast_path() -> None:
    rnd = random.Random(7)
    texts = [TEMPLATE.format(ident(rnd), ident(rnd)) for _ in range(50)]
    escape = Escaper()
    assert [escape(t) for t in texts] == [json.dumps(t, ensure_ascii=False) for t in texts]
    assert escape.cuts and all(escape._fast(t) == json.dumps(t, ensure_ascii=False) for t in texts[4:])


def test_copies_that_differ_elsewhere_or_need_escaping_there_fall_back_to_a_full_escape() -> None:
    rnd = random.Random(8)
    texts = [TEMPLATE.format(ident(rnd), ident(rnd)) for _ in range(4)]
    odd = [
        TEMPLATE.format(ident(rnd), ident(rnd)).replace("news", "NEWS"),  # differs outside the identifiers
        TEMPLATE.format('"' * 24, "\\" * 24),  # needs escaping where identifiers go
        TEMPLATE.format("\u00e9" * 24, "\n" * 24),
        TEMPLATE.format(ident(rnd), ident(rnd)) + "longer",
        "",
    ]
    escape = Escaper()
    for t in texts + odd + texts:
        assert escape(t) == json.dumps(t, ensure_ascii=False)
    assert all(escape._fast(t) is None for t in odd)


def test_random_texts_always_come_out_as_json_dumps_would() -> None:
    rnd = random.Random(9)
    alphabet = 'ab"\\\r\n\t\u00e9\u2028\x00 <>&'
    for _ in range(200):
        base = [rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40))]
        escape = Escaper()
        for _ in range(8):
            text = "".join(c if rnd.random() < 0.8 else rnd.choice(alphabet) for c in base)
            assert escape(text) == json.dumps(text, ensure_ascii=False)
