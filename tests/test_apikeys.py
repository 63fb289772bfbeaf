"""API keys: created and shown once, stored hashed, listed, revoked; the CLI around them."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from clicktrail import apikeys
from clicktrail.cli import main
from clicktrail.errors import BadInput
from clicktrail.tracker import Clicktrail


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_create_prints_the_key_once_alone_on_the_last_line(env: dict[str, str], client: FlaskClient) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--name", "newsletter app"])
    assert result.exit_code == 0, result.output
    key = result.output.splitlines()[-1]
    assert key.startswith("ct_") and " " not in key
    assert client.get("/api/stats", headers=bearer(key)).status_code == 200
    listed = CliRunner().invoke(main, ["keys", "list"])
    assert "newsletter app" in listed.output and "active" in listed.output and key not in listed.output


def test_only_a_hash_of_the_key_is_stored(parts: Clicktrail) -> None:
    made, key = apikeys.create(parts.store, "app")
    stored = parts.store.query("SELECT id, name, key_hash FROM api_keys")
    assert stored == [(made.id, "app", hashlib.sha256(key.encode()).hexdigest())]
    secret = key.split("_", 2)[2]  # the secret itself may hold "_"
    assert not any(secret in str(v) for v in stored[0])


def test_keys_are_distinct_and_checked_exactly(parts: Clicktrail) -> None:
    (a, key_a), (b, key_b) = apikeys.create(parts.store, "a"), apikeys.create(parts.store, "b")
    assert key_a != key_b and a.id != b.id
    assert apikeys.check(parts.store, key_a) == a and apikeys.check(parts.store, key_b) == b
    forged = key_a[:-1] + ("A" if key_a[-1] != "A" else "B")
    swapped = f"ct_{a.id}_{key_b.rsplit('_', 1)[1]}"  # one key's id with another's secret
    for wrong in (forged, swapped, "", "ct_", key_a + "x", key_a.upper()):
        assert apikeys.check(parts.store, wrong) is None


def test_a_revoked_key_stops_working_at_once(env: dict[str, str], client: FlaskClient, parts: Clicktrail) -> None:
    made, key = apikeys.create(parts.store, "old app")
    assert client.get("/api/stats", headers=bearer(key)).status_code == 200
    result = CliRunner().invoke(main, ["keys", "revoke", made.id])
    assert result.exit_code == 0 and made.id in result.output
    resp = client.get("/api/stats", headers=bearer(key))
    assert resp.status_code == 401 and resp.get_json()["error"]
    assert "revoked" in CliRunner().invoke(main, ["keys", "list"]).output


@pytest.mark.parametrize(("args", "needle"), [
    (["keys", "revoke", "000000000000"], "no API key"),
    (["keys", "create", "--name", "  "], "name"),
    (["keys", "create"], "--name"),
])
def test_cli_errors_name_the_problem(env: dict[str, str], args: list[str], needle: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and needle in result.output and "Traceback" not in result.output


def test_a_name_must_be_printable_and_short(parts: Clicktrail) -> None:
    for name in ("", "x" * 101, "tab\there"):
        with pytest.raises(BadInput):
            apikeys.create(parts.store, name)
