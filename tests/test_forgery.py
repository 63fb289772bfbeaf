"""Forged identifiers: altered, truncated, signed with another key, random. None redirects or logs."""

from __future__ import annotations

import base64
import random
import string
from collections import Counter

import pytest
import requests
from flask.testing import FlaskClient
from reliability import Seeded, logged, seed
from servers import gunicorn

from clicktrail.logstore import new_id
from clicktrail.tokens import TOKEN_LENGTH, Signer
from clicktrail.tracker import Clicktrail

B64 = string.ascii_letters + string.digits + "-_"
PER_KIND = 2000


def forgeries(copy: Seeded, rng: random.Random) -> dict[str, list[str]]:
    """10,000 identifiers we never minted, in five families of 2,000."""
    valid = list(copy.tokens.values())
    altered, truncated, foreign, random_ids, garbage = [], [], [], [], []
    other = Signer(b"another-secret-key")
    while len(altered) < PER_KIND:
        t = rng.choice(valid)
        i = rng.randrange(TOKEN_LENGTH)
        c = rng.choice(B64.replace(t[i], ""))
        altered.append(t[:i] + c + t[i + 1:])
    for _ in range(PER_KIND):
        t = rng.choice(valid)
        cut = rng.randrange(1, TOKEN_LENGTH)
        truncated.append(t[:cut] if rng.random() < 0.5 else t[cut:])
        # Another key, the same message and link: well formed, wrongly signed.
        foreign.append(other.mint(copy.attempt_id, rng.randrange(0, len(copy.urls) + 1)))
        random_ids.append("".join(rng.choice(B64) for _ in range(TOKEN_LENGTH)))
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        garbage.append(base64.urlsafe_b64encode(raw).decode() + rng.choice(["", "=", "%00", "%0d%0a", "..", "%ff"]))
    return {"altered": altered, "truncated": truncated, "another key": foreign, "random": random_ids,
            "garbage": garbage}


@pytest.fixture
def copy(parts: Clicktrail) -> Seeded:
    return seed(parts.store, parts.signer, [f"https://bank.example.com/pay/{i}" for i in range(1, 11)])


def test_valid_identifiers_do_redirect(client: FlaskClient, copy: Seeded) -> None:
    """The control: the genuine identifiers of the same copy work, so the 404s below mean 'forged'."""
    assert client.get(copy.path(3)).headers["Location"] == copy.urls[2]
    assert client.get(copy.path(0)).status_code == 200


def test_ten_thousand_forged_identifiers_never_redirect_or_log(client: FlaskClient, copy: Seeded,
                                                               parts: Clicktrail, env: dict[str, str]) -> None:
    families = forgeries(copy, random.Random(7))
    genuine = set(copy.tokens.values())
    statuses: Counter[tuple[str, int]] = Counter()
    for family, tokens in families.items():
        assert len(tokens) == PER_KIND
        for n, token in enumerate(tokens):
            assert token not in genuine
            path = (f"/{token}", f"/{token}/shown/path?q=1", f"/{token}/o.gif")[n % 3]  # click, link, pixel forms
            r = client.get(path)
            statuses[family, r.status_code] += 1
            assert r.status_code < 500, (path, r.status_code)
            assert "Location" not in r.headers, path
    assert {status for _, status in statuses} <= {404}, statuses
    assert logged(env["CLICKTRAIL_DATABASE"], "click") == []
    assert logged(env["CLICKTRAIL_DATABASE"], "open") == []
    # Genuinely signed, but for a message copy we never recorded: also a 404.
    for idx in range(3):
        assert client.get(f"/{parts.signer.mint(new_id(), idx)}/x").status_code == 404


@pytest.mark.slow
def test_forged_identifiers_through_gunicorn(copy: Seeded, env: dict[str, str]) -> None:
    families = forgeries(copy, random.Random(11))
    sample = [t for tokens in families.values() for t in tokens[:60]]
    with gunicorn(env, workers=2) as (base, _), requests.Session() as http:
        for token in sample:
            r = http.get(f"{base}/{token}/shown", allow_redirects=False, timeout=10)
            assert r.status_code in (400, 404), (token, r.status_code)  # 400: a path the HTTP layer refuses
            assert "Location" not in r.headers
        assert http.get(base + copy.path(1), allow_redirects=False, timeout=10).status_code == 302
    clicks = logged(env["CLICKTRAIL_DATABASE"])
    assert [url for *_, url in clicks] == [copy.urls[0]]  # only the genuine control click
