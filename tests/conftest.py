"""Shared fixtures: fresh settings, store, app and client for every test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from clicktrail.tracker import Clicktrail, create_app

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
if not (CORPUS / "MANIFEST.tsv").exists():  # the suite is meaningless without the shared mail corpus
    raise RuntimeError(f"the test corpus is missing: expected ../shared/corpus beside the repo, at {CORPUS}")
BASE = "https://clicks.example.com"


def need(program: str) -> str:
    """Path of a system program a test drives for real; skip (or fail in CI) without it."""
    for candidate in (program, f"/usr/sbin/{program}", f"/usr/bin/{program}"):
        found = shutil.which(candidate)
        if found:
            return found
    if os.environ.get("CLICKTRAIL_REQUIRE_ALL"):
        pytest.fail(f"{program} is required (CLICKTRAIL_REQUIRE_ALL is set) but not installed")
    pytest.skip(f"{program} is not installed")


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    """Settings for one test: its own database, key and click domain."""
    return {
        "click_domain": BASE,
        "database": str(tmp_path / "ct.db"),
        "secret_key": "test-secret-key",
        "stats_password": "s3cret-pass",
    }


class ClickClient(FlaskClient):
    """A test client that, like a reader's browser, sends requests to the app's click domain.

    The tracker answers only on its click domains, not on Flask's default "localhost";
    a test may still pass ``base_url=`` or a ``Host`` header of its own.
    """

    def _click_domain(self) -> str | None:
        parts = self.application.extensions.get("clicktrail")
        return None if parts is None else str(parts.config["click_domain"])

    def open(self, *args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get("path")
        base = self._click_domain()
        if isinstance(path, str) and not urlsplit(path).netloc and "base_url" not in kwargs and base:
            kwargs["base_url"] = base
        return super().open(*args, **kwargs)

    def session_transaction(self, *args: Any, **kwargs: Any) -> Any:
        base = self._click_domain()
        if not args and "base_url" not in kwargs and base:  # the session cookie belongs to the click domain
            kwargs["base_url"] = base
        return super().session_transaction(*args, **kwargs)


@pytest.fixture(autouse=True)
def click_domain_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Flask test client of the suite requests the app's click domain."""
    monkeypatch.setattr(Flask, "test_client_class", ClickClient)


@pytest.fixture
def app(settings: dict[str, Any]) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def parts(app: Flask) -> Clicktrail:
    """The running app's store, signer and options."""
    return app.extensions["clicktrail"]  # type: ignore[no-any-return]


@pytest.fixture
def key(parts: Clicktrail) -> str:
    """A live API key."""
    from clicktrail import apikeys  # here, not at the top: the suite also runs on trees without the API

    return apikeys.create(parts.store, "tests")[1]


@pytest.fixture
def auth(key: str) -> dict[str, str]:
    """Headers that carry the API key."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def env(settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The same settings as environment variables, for CLI and server subprocesses."""
    values = {f"CLICKTRAIL_{k.upper()}": str(v) for k, v in settings.items()}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    yield values
