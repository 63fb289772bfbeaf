"""The Flask app and the tracking routes: click, image and open pixel.

request → host (``domains``: ours, or 404) → identifier (``Signer.verify``,
bound to the click domain's host) → store (``Store.link``) → event →
redirect.  The redirect target comes only from the store, found through an
authenticated identifier; the request path after the identifier is shown for
the reader's benefit and never read.  A tracking response never fails
because logging failed: the event is spooled, the reader still lands.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_mod
from . import domains
from .errors import ClicktrailError
from .logstore import Event, Store
from .rewrite import CLICK, Options
from .tokens import PIXEL, Signer
from .urls import browser_url

log = logging.getLogger(__name__)

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Referrer-Policy": "no-referrer",
}

bp = Blueprint("tracking", __name__)


@dataclass
class Clicktrail:
    """What the routes need, built once per app."""

    config: config_mod.Config
    store: Store
    signer: Signer

    @property
    def options(self) -> Options:
        c = self.config
        return Options(c["click_domain"], c["track_clicks"], c["track_opens"], c["scam_protection"])


def ct() -> Clicktrail:
    """The running app's clicktrail parts."""
    return current_app.extensions["clicktrail"]  # type: ignore[no-any-return]


def build(cfg: config_mod.Config) -> Clicktrail:
    """Open the store (migrating it) and the signer for these settings."""
    store = Store(cfg["database"], cfg["spool"], sync=cfg["sync"])
    store.migrate()
    signer = Signer(cfg["secret_key"].encode(), tuple(k.encode() for k in cfg["old_secret_keys"]))
    return Clicktrail(cfg, store, signer)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: settings (``config`` overrides environment and file), store, routes."""
    cfg = config_mod.load(overrides=config)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = hashlib.sha256(b"clicktrail session\x00" + cfg["secret_key"].encode()).hexdigest()
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = cfg["click_domain"].startswith("https://")
    app.extensions["clicktrail"] = build(cfg)
    if cfg["trusted_proxies"]:
        n = cfg["trusted_proxies"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    domains.init_app(app)
    app.register_blueprint(bp)
    from . import api, stats

    stats.init_app(app)
    api.init_app(app)

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[str, int]:
        return render_template("notfound.html"), 404

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> tuple[str, int]:
        return render_template("notfound.html"), 405

    @app.errorhandler(ClicktrailError)
    def bad_input(e: ClicktrailError) -> tuple[str, int]:
        return render_template("error.html", message=e.message), e.status

    return app


class _ExactRedirect(Response):
    """A redirect whose Location goes out as stored: Werkzeug's IRI-to-URI pass
    would drop an empty ``?`` or ``#`` and escape ``|``, ``[``, ``]``, ``^``."""

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        headers["Location"] = self.headers["Location"]
        return headers


def _record(event: Event) -> None:
    if request.method == "HEAD":
        return  # a HEAD answers the same but is not a view or a click
    try:
        ct().store.add_event(event)
    except ClicktrailError as e:
        log.error("event lost to a failing store and spool: %s", e)


def _pixel() -> Response:
    return Response(PIXEL_GIF, 200, {"Content-Type": "image/gif", **NO_CACHE})


def _location(url: str) -> str | None:
    """Where to send the reader for a stored URL; None if it is not an http(s) URL."""
    if url.isascii() and url.isprintable() and url[:8].lower().startswith(("http://", "https://")):
        return url  # what the rewriter stores: sent byte for byte
    # Stored by other means (CR, LF, NUL, non-ASCII): a header value cannot hold
    # it (a 500, or a split header); send what a browser would request instead.
    return browser_url(url)


def _redirect(url: str) -> Response:
    # Set the header ourselves: the URL is already exactly what the browser
    # should request, and must reach it byte for byte.
    resp = _ExactRedirect("", 302, {**NO_CACHE, "Content-Type": "text/plain; charset=utf-8"})
    resp.autocorrect_location_header = False
    resp.headers["Location"] = url
    return resp


# No slash merging: Werkzeug would answer "//" in a path with its own redirect, before
# the identifier is checked (an original path may hold "//" too).
@bp.route("/<token>", methods=["GET", "HEAD"], merge_slashes=False)
@bp.route("/<token>/", methods=["GET", "HEAD"], merge_slashes=False)
@bp.route("/<token>/<path:_shown>", methods=["GET", "HEAD"], merge_slashes=False)
def follow(token: str, _shown: str = "") -> Response | tuple[str, int]:
    """A tracked click, image or open pixel."""
    parts = ct()
    host = domains.request_host()
    ref = parts.signer.verify(token, host)
    if ref is None or (ref.host is None and host not in domains.home_hosts(parts.config)):
        return render_template("notfound.html"), 404  # forged, or a link of another click domain
    try:
        found = parts.store.link(ref.attempt_id, ref.link_idx)
    except sqlite3.Error as e:
        log.error("link lookup failed: %s", e)
        if ref.link_idx == PIXEL:
            return _pixel()  # the pixel is always served
        return render_template("error.html", message="Please try again in a moment."), 503
    if found is None:
        return render_template("notfound.html"), 404
    kind, url = found
    location = _location(url) if ref.link_idx != PIXEL else ""
    if location is None:
        log.error("link %s of %016x holds no http(s) URL; not redirecting", ref.link_idx, ref.attempt_id)
        return render_template("notfound.html"), 404
    event = Event(
        "click" if kind == CLICK else "open",
        ref.attempt_id,
        ref.link_idx,
        url or None,
        kind=None if kind == CLICK else kind,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
    )
    _record(event)
    return _pixel() if ref.link_idx == PIXEL else _redirect(location)
