"""The Flask app and the tracking routes: click, image and open pixel.

request → host (``domains``: ours, or 404) → identifier (``Signer.verify``,
bound to the click domain's host) → store (``Store.link``) → event →
redirect.  The redirect target comes only from the store, found through an
authenticated identifier; the request path after the identifier is shown for
the reader's benefit and never read.  A tracking response never fails
because logging failed: the event is spooled, the reader still lands.

Tracking requests are most of the traffic, so a link that resolves is
answered by ``FastTrack``, plain WSGI ahead of Flask, with the same
``lookup`` and ``record`` as the Flask route; anything else (an unknown
identifier, a store error, every other address) goes on to Flask, which
answers it in full.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_host

from . import config as config_mod
from . import domains
from .errors import ClicktrailError
from .logstore import Event, Store
from .rewrite import CLICK, Options
from .tokens import PIXEL, TOKEN_LENGTH, LinkRef, Signer
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
TRACKING = frozenset({"tracking.follow"})  # the endpoints every click domain serves: click, image, pixel


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

    @cached_property
    def home_hosts(self) -> frozenset[str]:
        """Hosts where links of the default click domain are valid (settings do not change while running)."""
        return frozenset(domains.home_hosts(self.config))

    @cached_property
    def dashboard_host(self) -> str:
        """The host that serves the dashboard and /api besides the tracked links."""
        return domains.dashboard_host(self.config)


def ct() -> Clicktrail:
    """The running app's clicktrail parts."""
    return current_app.extensions["clicktrail"]  # type: ignore[no-any-return]


def build(cfg: config_mod.Config, serving: bool = False) -> Clicktrail:
    """Open the store (migrating it) and the signer for these settings.

    ``serving``: for a long-running process (the web app, the relay), whose
    events go through its journal (``Store.serve``).
    """
    store = Store(cfg["database"], cfg["spool"], sync=cfg["sync"])
    if serving:
        store.serve()
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
    app.extensions["clicktrail"] = build(cfg, serving=True)
    app.wsgi_app = FastTrack(app, app.wsgi_app)  # type: ignore[method-assign]
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


def record(parts: Clicktrail, event: Event) -> None:
    """Log a tracking event; a failing store and spool are logged, never passed to the reader."""
    try:
        parts.store.add_event(event)
    except (ClicktrailError, OSError, sqlite3.Error) as e:  # the store wraps these; none may reach the reader
        log.error("event lost to a failing store and spool: %s", e)


def lookup(parts: Clicktrail, token: str, host: str) -> tuple[LinkRef, str, str, str] | None:
    """The link behind an identifier asked for on this host: (ref, kind, url, location), or None.

    None means not ours (forged, unknown, another click domain's, or no http(s)
    URL to send anyone to).  A store that cannot be read raises ``sqlite3.Error``.
    """
    ref = parts.signer.verify(token, host)
    if ref is None or (ref.host is None and host not in parts.home_hosts):
        return None  # forged, or a link of another click domain
    found = parts.store.link(ref.attempt_id, ref.link_idx)
    if found is None:
        return None
    kind, url = found
    location = _location(url) if ref.link_idx != PIXEL else ""
    if location is None:
        log.error("link %s of %016x holds no http(s) URL; not redirecting", ref.link_idx, ref.attempt_id)
        return None
    return ref, kind, url, location


def _event(ref: LinkRef, kind: str, url: str, ip: str | None, user_agent: str | None) -> Event:
    return Event("click" if kind == CLICK else "open", ref.attempt_id, ref.link_idx, url or None,
                 kind=None if kind == CLICK else kind, ip=ip, user_agent=user_agent)


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
    """A tracked click, image or open pixel (when FastTrack passed it on: HEAD, errors, refusals)."""
    parts = ct()
    host = domains.request_host()
    try:
        found = lookup(parts, token, host)
    except sqlite3.Error as e:
        log.error("link lookup failed: %s", e)
        ref = parts.signer.verify(token, host)
        if ref is not None and ref.link_idx == PIXEL:
            return _pixel()  # the pixel is always served
        return render_template("error.html", message="Please try again in a moment."), 503
    if found is None:
        return render_template("notfound.html"), 404
    ref, kind, url, location = found
    if request.method != "HEAD":  # a HEAD answers the same but is not a view or a click
        record(parts, _event(ref, kind, url, request.remote_addr, request.headers.get("User-Agent")))
    return _pixel() if ref.link_idx == PIXEL else _redirect(location)


_REDIRECT_HEADERS = [*NO_CACHE.items(), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "0")]
_PIXEL_HEADERS = [("Content-Type", "image/gif"), *NO_CACHE.items(), ("Content-Length", str(len(PIXEL_GIF)))]
StartResponse = Callable[..., Any]


class FastTrack:
    """Answer a tracked click, image or pixel that resolves without Flask's per-request machinery.

    The same host check, ``lookup`` and ``record`` as the Flask route; whatever
    this does not answer (HEAD, unknown identifiers, store errors, any other
    address) goes on to the Flask app unchanged.
    """

    def __init__(self, app: Flask, wsgi: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app, self.wsgi = app, wsgi

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if len(path) > TOKEN_LENGTH and path[TOKEN_LENGTH + 1 : TOKEN_LENGTH + 2] in ("", "/"):
            if environ.get("REQUEST_METHOD") == "GET":
                answer = self.answer(environ, path[1 : TOKEN_LENGTH + 1])
                if answer is not None:
                    start_response(*answer[:2])
                    return [answer[2]]
            if path[TOKEN_LENGTH + 1 : TOKEN_LENGTH + 3] == "//":
                # An original path that starts with "//" (https://host//a): shown, never read, so the
                # Flask route (which no rule with a leading slash in a path part matches) gets one slash.
                environ["PATH_INFO"] = path[: TOKEN_LENGTH + 2] + path[TOKEN_LENGTH + 1 :].lstrip("/")
        return self.wsgi(environ, start_response)

    def answer(self, environ: dict[str, Any], token: str) -> tuple[str, list[tuple[str, str]], bytes] | None:
        parts: Clicktrail = self.app.extensions["clicktrail"]
        for hook in self.app.extensions.get("clicktrail-per-worker", ()):
            hook()  # what Flask's before_request would start in this worker (the aggregation timer)
        host = get_host(environ).lower().rstrip(".")
        if not domains.host_allowed(parts, host):
            return None
        try:
            found = lookup(parts, token, host)
        except sqlite3.Error:
            return None  # the Flask route answers it: the pixel anyway, a click with a page
        if found is None:
            return None
        ref, kind, url, location = found
        record(parts, _event(ref, kind, url, environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT")))
        if ref.link_idx == PIXEL:
            return "200 OK", _PIXEL_HEADERS, PIXEL_GIF
        return "302 FOUND", [("Location", location), *_REDIRECT_HEADERS], b""
