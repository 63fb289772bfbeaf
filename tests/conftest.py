"""Shared fixtures: fresh settings, store, app and client for every test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from clicktrail.tracker import Clicktrail, create_app

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
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
def env(settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The same settings as environment variables, for CLI and server subprocesses."""
    values = {f"CLICKTRAIL_{k.upper()}": str(v) for k, v in settings.items()}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    yield values
