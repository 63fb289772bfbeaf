"""SMTP logins: hashed passwords, per-login defaults, and the smtp-users commands."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from clicktrail import config as config_mod
from clicktrail import smtpusers
from clicktrail.cli import main
from clicktrail.errors import BadInput
from clicktrail.logstore import Store
from clicktrail.tracker import build


@pytest.fixture
def store(settings: dict[str, Any]) -> Store:
    return build(config_mod.load(environ={}, overrides=settings)).store


def test_passwords_are_stored_salted_and_hashed(store: Store) -> None:
    smtpusers.add(store, "app", "s3cret")
    smtpusers.add(store, "other", "s3cret")
    stored = [p for (p,) in store.query("SELECT password FROM smtp_users ORDER BY name")]
    assert all(p.startswith("scrypt$") and "s3cret" not in p for p in stored)
    assert stored[0] != stored[1]  # each has its own salt
    assert smtpusers.authenticate(store, "app", "s3cret") == smtpusers.get(store, "app")
    assert smtpusers.authenticate(store, "app", "S3cret") is None
    assert smtpusers.authenticate(store, "nobody", "s3cret") is None
    assert not smtpusers.check_password("x", "not a hash")


@pytest.mark.parametrize(("name", "password", "problem"), [
    ("", "pw", "cannot be a login name"),
    ("two words", "pw", "cannot be a login name"),
    ("app", "", "password is empty"),
])
def test_bad_logins_are_refused(store: Store, name: str, password: str, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        smtpusers.add(store, name, password)


def test_smtp_users_commands(env: dict[str, str], store: Store) -> None:
    runner = CliRunner()
    added = runner.invoke(main, ["smtp-users", "add", "app", "--no-clicks"], input="pa ss\n")
    assert added.exit_code == 0, added.output
    assert "added app (clicks off, opens on)" in added.output
    login = smtpusers.authenticate(store, "app", "pa ss")
    assert login is not None and (login.track_clicks, login.track_opens) == (False, True)
    again = runner.invoke(main, ["smtp-users", "add", "app"], input="other\n")
    assert again.exit_code == 1 and "login 'app' already exists" in again.output
    empty = runner.invoke(main, ["smtp-users", "add", "b"], input="\n")
    assert empty.exit_code == 1 and "password is empty" in empty.output
    listed = runner.invoke(main, ["smtp-users", "list"])
    assert listed.exit_code == 0 and listed.output.startswith("app\tclicks off\topens on\tadded 20")
    removed = runner.invoke(main, ["smtp-users", "remove", "app"])
    assert removed.exit_code == 0 and smtpusers.get(store, "app") is None
    gone = runner.invoke(main, ["smtp-users", "remove", "app"])
    assert gone.exit_code == 1 and "there is no login 'app'" in gone.output
