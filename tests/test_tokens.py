"""tokens: identifiers are short, authenticated, and survive key rotation."""

import random

from clicktrail.tokens import TOKEN_LENGTH, LinkRef, Signer


def test_minted_identifier_round_trips() -> None:
    signer = Signer(b"key-one")
    token = signer.mint(2**62 + 12345, 7)
    assert len(token) == TOKEN_LENGTH
    assert signer.verify(token) == LinkRef(2**62 + 12345, 7)


def test_every_single_character_change_is_refused() -> None:
    signer = Signer(b"key-one")
    token = signer.mint(987654321, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        for ch in alphabet:
            if ch != token[i]:
                assert signer.verify(token[:i] + ch + token[i + 1 :]) is None


def test_truncated_extended_and_random_identifiers_are_refused() -> None:
    signer = Signer(b"key-one")
    token = signer.mint(1, 1)
    assert signer.verify(token[:-1]) is None
    assert signer.verify(token + "A") is None
    assert signer.verify("") is None
    assert signer.verify("é" * 24) is None
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert all(signer.verify("".join(rng.choice(alphabet) for _ in range(24))) is None for _ in range(2000))


def test_another_key_cannot_sign_links() -> None:
    assert Signer(b"key-one").verify(Signer(b"attacker").mint(5, 1)) is None


def test_old_links_keep_working_after_a_new_key_is_added() -> None:
    old = Signer(b"key-one").mint(42, 2)
    rotated = Signer(b"key-two", (b"key-one",))
    assert rotated.verify(old) == LinkRef(42, 2)
    assert rotated.mint(42, 2) != old
    assert Signer(b"key-two").verify(old) is None
