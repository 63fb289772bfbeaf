"""The stats dashboard's door: login, logout, CSRF, and wiring the dashboard into the app.

There is no default password.  ``CLICKTRAIL_DASHBOARD=auto`` (the default)
turns the dashboard on only when a password or a user is configured, and
otherwise logs why it is off; ``on`` refuses to start without one; ``off``
leaves only the tracker.  The tracking routes work in every case.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, abort, current_app, has_request_context, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash, generate_password_hash
from werkzeug.wrappers import Response

from .aggregate import Timer
from .errors import ConfigError
from .tracker import ct

log = logging.getLogger(__name__)

bp = Blueprint("stats", __name__)
HASH_METHODS = ("scrypt", "pbkdf2")
QUOTE = "(a hash holds '$': put the value in single quotes in a shell or in clicktrail.env)"
SHARED_USER = "stats"  # the user name of whoever logs in with the shared password
F = TypeVar("F", bound=Callable[..., Any])


def is_hash(value: str) -> bool:
    """Whether a configured password is a werkzeug hash (``method$salt$hash``) rather than plain text."""
    return value.startswith(HASH_METHODS) and value.count("$") == 2


def enabled(cfg: Any) -> bool:
    """Whether these settings turn the dashboard on; ConfigError if they ask for it without a password."""
    if cfg["dashboard"] == "off":
        return False
    for name, hashed in cfg["stats_users"]:
        if not is_hash(hashed):
            raise ConfigError(f"CLICKTRAIL_STATS_USERS: the entry for {name!r} is not a password hash;"
                              f" make one with `clicktrail hash-password` {QUOTE}")
    want = cfg["stats_password"] or ""
    if want.startswith(tuple(m + ":" for m in HASH_METHODS)) and not is_hash(want):
        # What sh leaves of a hash it expanded ("scrypt:32768:8:1"): as a plain password, anyone could guess it.
        raise ConfigError(f"CLICKTRAIL_STATS_PASSWORD is a password hash cut short at a '$' {QUOTE}")
    if cfg["stats_password"] or cfg["stats_users"]:
        return True
    if cfg["dashboard"] == "on":
        raise ConfigError("CLICKTRAIL_DASHBOARD is on but neither CLICKTRAIL_STATS_PASSWORD nor CLICKTRAIL_STATS_USERS"
                          " is set: the dashboard has no default password, so it will not start without one")
    return False


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


def check_csrf() -> None:
    """Refuse a form post whose CSRF token is not this session's."""
    sent = request.form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "the form expired; reload the page and try again")


def _same(a: str, b: str) -> bool:
    digest = lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).digest()  # noqa: E731
    return hmac.compare_digest(digest(a), digest(b))


@functools.cache
def _decoy(method: str) -> str:
    """A hash of a random password, made as ``method`` makes them."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def verify(user: str, password: str) -> str | None:
    """The user name these credentials log in as, or None."""
    cfg = ct().config
    if user:
        for name, hashed in cfg["stats_users"]:
            if _same(name, user):
                return name if check_password_hash(hashed, password) else None
        # An unknown name costs the same hash check as a known one, so timing does not tell which names exist.
        method = cfg["stats_users"][0][1].partition("$")[0] if cfg["stats_users"] else "scrypt"
        check_password_hash(_decoy(method), password)
        return None
    want = cfg["stats_password"]
    if not want or not password:
        return None
    ok = check_password_hash(want, password) if is_hash(want) else _same(password, want)
    return SHARED_USER if ok else None


def login_required(view: F) -> F:
    """Send whoever is not logged in to the login page."""
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not session.get("user"):
            return redirect(url_for("stats.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped  # type: ignore[return-value]


def safe_next(target: str | None) -> str:
    """A place to go back to on this dashboard only (never another site)."""
    if target and target.startswith("/stats") and "//" not in target and "\\" not in target:
        return target
    return url_for("stats.overview")


@bp.before_request
def dashboard_on() -> tuple[str, int] | None:
    """Answer every dashboard address with a page saying why it is off, when it is."""
    if not current_app.config.get("CLICKTRAIL_DASHBOARD"):
        return render_template("error.html", message="The stats dashboard is off: no password is configured"
                               " (set CLICKTRAIL_STATS_PASSWORD or CLICKTRAIL_STATS_USERS)."), 404
    return None


@bp.after_request
def private(resp: Response) -> Response:
    """Add the headers that keep dashboard pages private and script-free."""
    # Pages hold private figures and the sender's and readers' text: no caching,
    # no framing, nothing loaded from elsewhere, no scripts.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    return resp


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    """The login form; on success, a fresh session."""
    error = None
    if request.method == "POST":
        check_csrf()
        user = verify(request.form.get("user", "").strip(), request.form.get("password", ""))
        if user:
            session.clear()  # a new session on login: no fixation
            session["user"] = user
            return redirect(safe_next(request.form.get("next")))
        error = "Wrong user name or password."
    page = render_template("login.html", csrf=csrf_token(), error=error, next=request.values.get("next", ""),
                           users=bool(ct().config["stats_users"]), password=bool(ct().config["stats_password"]))
    return page, (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """End the session."""
    check_csrf()
    session.clear()
    return redirect(url_for("stats.login"))


class TLSAwareSession(SecureCookieSessionInterface):
    """The session cookie, ``Secure`` also whenever the request itself came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        # The click domain may be http:// while the dashboard is reached over https, e.g. a
        # dashboard host behind nginx (X-Forwarded-Proto, believed with CLICKTRAIL_TRUSTED_PROXIES).
        return bool(super().get_cookie_secure(app) or (has_request_context() and request.is_secure))


def _start_timer(app: Flask, interval: int) -> None:
    """Start the aggregation timer in each worker process, on its first request.

    Lazily, because gunicorn forks workers after the app is built when
    preloading, and a thread does not survive a fork.
    """
    started: dict[str, int] = {}
    store = app.extensions["clicktrail"].store
    app_ref = weakref.ref(app)

    @app.before_request
    def aggregate_on_timer() -> None:
        if started.get("pid") != os.getpid():
            started["pid"] = os.getpid()
            Timer(store, interval, alive=lambda: app_ref() is not None).start()

    # Clicks answered ahead of Flask (tracker.FastTrack) start it too: a worker may see nothing else.
    app.extensions.setdefault("clicktrail-per-worker", []).append(aggregate_on_timer)


def init_app(app: Flask) -> None:
    """Plug the dashboard in (or, without a password, a page saying it is off) and its aggregation timer."""
    from . import dashboard  # noqa: F401 - its routes join this blueprint

    cfg = app.extensions["clicktrail"].config
    on = enabled(cfg)
    if not on and cfg["dashboard"] == "auto":
        log.warning("stats dashboard off: set CLICKTRAIL_STATS_PASSWORD or CLICKTRAIL_STATS_USERS to turn it on"
                    " (tracking works without it)")
    app.config["CLICKTRAIL_DASHBOARD"] = on
    app.session_interface = TLSAwareSession()
    app.register_blueprint(bp)
    if on and cfg["aggregate_interval"]:
        _start_timer(app, cfg["aggregate_interval"])
