"""The stats page (``/stats``) and its login; never open without a configured password."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Blueprint, Flask, abort, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from .tracker import ct

bp = Blueprint("stats", __name__)


def _password() -> str | None:
    return ct().config["stats_password"]  # type: ignore[no-any-return]


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "the form expired; reload the page and try again")


def _password_ok(given: str) -> bool:
    want = _password() or ""
    digest = lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()  # noqa: E731
    return bool(want) and hmac.compare_digest(digest(given), digest(want))


@bp.route("/stats")
def overview() -> Response | str | tuple[str, int]:
    """Messages, opens and clicks (unique and total), and the best performing links."""
    if not _password():
        return render_template("error.html", message="The stats page is disabled: no password is configured."), 404
    if not session.get("stats"):
        return redirect(url_for("stats.login"))
    return render_template("stats.html", s=ct().store.stats(), csrf=_csrf_token())


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if not _password():
        return render_template("error.html", message="The stats page is disabled: no password is configured."), 404
    error = None
    if request.method == "POST":
        _check_csrf()
        if _password_ok(request.form.get("password", "")):
            session.clear()
            session["stats"] = True
            return redirect(url_for("stats.overview"))
        error = "Wrong password."
    return render_template("login.html", csrf=_csrf_token(), error=error), (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    _check_csrf()
    session.clear()
    return redirect(url_for("stats.login"))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
