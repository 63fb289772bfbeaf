"""The REST API under /api: submit messages, download raw logs, read stats; every call needs a key.

request → key (``apikeys.check``) → fields (``formdata``, ``submission``) →
``messages.track`` → one rewritten copy per recipient (→ with ``send``,
``delivery.deliver``, the SMTP relay's path).  Logs stream from the store in
batches (``export``); stats are read by ``api_stats`` (its route joins this
blueprint); click domains are managed by the nested blueprint of ``api_domains``.
Every answer under /api is JSON, errors and unknown paths included
(``{"error": …, "field": …}``); the OpenAPI document is built by ``openapi``.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, stream_with_context
from werkzeug.exceptions import (
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    default_exceptions,
)
from werkzeug.routing import BaseConverter, Rule

from . import api_domains, apikeys, export, formdata, openapi, submission
from .delivery import Outcome, Upstream, deliver
from .errors import SHOWN, BadInput, ClicktrailError, ConfigError, shown
from .jsoncopies import Escaper
from .logstore import Scope, parse_attempt_key
from .messages import for_rewrite, track
from .mime import BadSwitch, Prepared, looks_like_mime
from .tracker import ct

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/api")
bp.register_blueprint(api_domains.bp, url_prefix="/domains")  # inside: the same key check and JSON errors
LOG_PARAMS = ("start", "end", "tag", "message", "recipient", "format", "after", "limit")
MAX_LIMIT = 10_000_000
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
UNESCAPED_PLUS = re.compile(r"(?<=\d) (\d\d:?\d\d)$")
MESSAGE_KEY = re.compile(r"^[0-9a-fA-F]{16}$")
SEND_TIMEOUT = 20  # seconds per mail server answer with send: true, below gunicorn's worker timeout
# One request's copies must be made and answered well within gunicorn's 30 s worker timeout: a copy costs
# about its size in the answer and ~4 µs per identifier minted (10,000 links x 1,000 recipients took > 30 s).
MAX_ANSWER_BYTES = 64_000_000  # the documented 45 KB newsletter to 1,000 recipients fits (bench/recipients.py)
MAX_IDENTIFIERS = 2_000_000  # recipients x links
LINK_BYTES = 40  # what rewriting adds per link, about: the click domain and a 24-character identifier
MAX_ERROR = 500  # characters of an error message: values in it are cut (errors.shown), this catches the rest


def _error(message: str, status: int, field: str | None = None) -> Response:
    if len(message) > MAX_ERROR:
        message = message[:MAX_ERROR] + "…"
    if field is not None and len(field) > SHOWN:  # an unknown field's name, as sent
        field = field[:SHOWN] + "…"
    resp = jsonify(error=message, field=field)
    resp.status_code = status
    return resp


@bp.before_request
def authenticate() -> Response | None:
    """Let the request through only with a live key: ``Authorization: Bearer KEY``."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    found = apikeys.check(ct().store, key.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        resp = _error("a valid API key is required: Authorization: Bearer KEY", 401)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="clicktrail"'
        return resp
    g.api_key = found  # who is calling, for the routes
    return None


def http_error(e: HTTPException) -> Response:
    """Answer an HTTP error (404, 405, 413, 415…) in JSON."""
    resp = _error(e.description or e.name, e.code or 500)
    if isinstance(e, MethodNotAllowed) and e.valid_methods:
        resp.headers["Allow"] = ", ".join(e.valid_methods)
    return resp


# By code too: Flask prefers the app's handler for a code (the HTML 404 page) over a class handler here.
bp.register_error_handler(HTTPException, http_error)
for _code in default_exceptions:
    bp.register_error_handler(_code, http_error)


@bp.errorhandler(ClicktrailError)
def bad_input(e: ClicktrailError) -> Response:
    """Answer bad input (or a store that cannot take it) in JSON, naming the field."""
    return _error(e.message, e.status, e.field)


@bp.errorhandler(sqlite3.Error)
def store_failing(e: sqlite3.Error) -> Response:
    """Answer 503 when the database fails: the request may be tried again."""
    log.error("API request: the store failed: %s", e)
    return _error("the store cannot be read or written now; try again in a moment", 503)


@bp.errorhandler(Exception)
def unexpected(e: Exception) -> Response:
    """Answer a bug in JSON too (logged with its traceback), never with an HTML page."""
    log.exception("API request failed: %s", e)
    return _error("internal error; it has been logged", 500)


# -- submitting messages ------------------------------------------------------------
def _read_submission() -> submission.Submission:
    limit = ct().config["max_message_bytes"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the request body is over {limit} bytes")
    if request.content_length is None:
        # Sent without a length (chunked): werkzeug stops quietly at the maximum, so read
        # one byte past it to tell a body of exactly the limit from a longer one.
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise RequestEntityTooLarge(f"the request body is over {limit} bytes")
    request.max_content_length = limit
    request.max_form_memory_size = limit
    domain = urlsplit(ct().config["click_domain"]).hostname or "clicktrail.invalid"
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data())
        except (ValueError, RecursionError) as e:
            raise BadInput(f"the body is not valid JSON: {e}") from e
        return submission.from_json(body, domain)
    if request.mimetype == "multipart/form-data":
        return submission.from_form(formdata.multipart(request.get_data(), request.mimetype_params.get("boundary")),
                                    domain)
    if request.mimetype == "application/x-www-form-urlencoded":
        return submission.from_form(formdata.urlencoded(request.get_data()), domain)
    raise UnsupportedMediaType("send application/json, application/x-www-form-urlencoded or multipart/form-data")


class TooMuchWork(ClicktrailError):
    """The copies asked for would take too long to make and answer."""

    status = 413


def _most_recipients(prepared: Prepared) -> int:
    """How many copies of this message one request may ask for (always at least one)."""
    links = len(prepared.links.links)
    by_size = MAX_ANSWER_BYTES // (len(prepared.raw) + links * LINK_BYTES + 1)
    by_ids = MAX_IDENTIFIERS // links if links else by_size
    return max(1, min(by_size, by_ids))


def _content_field(sub: submission.Submission, warning: str) -> str:
    """The request field a warning about the message is about: mime, or the html or text it was built from."""
    if len(sub.content) == 1:
        return sub.content[0]
    return "text" if "text/plain" in warning else "html"


def _checker(sub: submission.Submission, copies: int) -> Callable[[Prepared], None]:
    """Refuse a message that would go out untracked, tracked against the request's switches, or in too many copies."""
    def accept(prepared: Prepared) -> None:
        if prepared.warnings:
            name = _content_field(sub, prepared.warnings[0])
            raise BadInput(f"{name} cannot be read exactly: {prepared.warnings[0]}", field=name)
        most = _most_recipients(prepared)
        if copies > most:
            raise TooMuchWork(f"{copies} copies of this message ({len(prepared.raw):,} bytes, "
                              f"{len(prepared.links.links):,} links) are too much for one request: send fewer "
                              f"recipients per request (at most {most} for this message)", field="recipients")
        for name, asked, got in (("trackclicks", sub.track_clicks, prepared.track_clicks),
                                 ("trackopens", sub.track_opens, prepared.track_opens)):
            if asked is not None and asked != got:
                raise BadInput(f"{name} contradicts the X-Clicktrail-{name.title()} header of mime", field=name)
    return accept


def _content(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


@bp.post("/messages", provide_automatic_options=False)
def submit() -> Response:
    """Rewrite a message for each recipient, record one attempt per copy, answer every copy."""
    sub = _read_submission()
    if not sub.built and not looks_like_mime(sub.raw):
        raise BadInput("mime is not a MIME message (it must start with headers); send bare HTML as html",
                       field="mime")
    parts = ct()
    opts = parts.options
    opts = dataclasses.replace(
        opts,
        track_clicks=opts.track_clicks if sub.track_clicks is None else sub.track_clicks,
        track_opens=opts.track_opens if sub.track_opens is None else sub.track_opens,
    )
    if not sub.built:  # as in the relay and the CLI, but refused: the caller chose to send it to us
        rewritable = for_rewrite(sub.raw, parts.config["smtp_rewrite_dkim"])
        if rewritable is None:
            raise BadInput("mime carries a DKIM-Signature that rewriting would break: sign after clicktrail "
                           "(or set CLICKTRAIL_SMTP_REWRITE_DKIM=yes to remove it)", field="mime")
        sub.raw = rewritable
    recipients: list[str | None] = [*sub.recipients] or [None]
    if sub.send:  # everything that can stop a send is checked before anything is recorded
        sender, to, upstream = _sending(sub)
        recipients = [*to]
    try:
        result = track(parts.store, parts.signer, opts, sub.raw, recipients, sub.tag,
                       accept=_checker(sub, len(recipients)), api_key_name=g.api_key.name)
    except BadSwitch as e:
        raise BadInput(str(e), field="mime") from e
    copies = []
    for copy in result.copies:
        text, encoding = _content(copy.data)
        copies.append({"message": copy.message, "recipient": copy.recipient, "mime": text, "encoding": encoding})
    answer: dict[str, Any] = {"messages": copies, "links": len(result.prepared.links.links),
                              "track_clicks": result.prepared.track_clicks, "track_opens": result.prepared.track_opens}
    status = 200
    if sub.send:
        outcomes = deliver(parts.store, upstream, sender, result.copies)
        status = _sent(answer, outcomes)
    return Response(_json_answer(answer), status=status, content_type="application/json")


def _json_answer(answer: dict[str, Any]) -> Iterator[bytes]:
    """The answer as JSON, a copy at a time: never the whole answer (all copies) in memory as one string."""
    rest = json.dumps({k: v for k, v in answer.items() if k != "messages"}, ensure_ascii=False)
    escape = Escaper()  # the copies differ only in their identifiers: escaped once, stamped (jsoncopies)
    yield b'{"messages": ['
    for i, copy in enumerate(answer["messages"]):
        head = json.dumps({k: v for k, v in copy.items() if k != "mime"}, ensure_ascii=False)
        text = f'{", " if i else ""}{head[:-1]}, "mime": {escape(copy["mime"])}}}'
        yield text.encode("utf-8", "surrogatepass")
    yield b"], " + rest[1:].encode("utf-8")


class NoMailServer(ClicktrailError):
    """send: true, but no mail server is configured."""

    status = 503


def _sending(sub: submission.Submission) -> tuple[str, list[str], Upstream]:
    """Envelope sender, recipients and mail server for ``send: true`` (a 400 or 503 if there are none)."""
    sender, recipients = submission.envelope(sub)
    cfg = ct().config
    try:
        upstream = Upstream.from_config(cfg)
    except ConfigError as e:
        raise NoMailServer("cannot send: no mail server is configured; set CLICKTRAIL_SMTP_UPSTREAM to HOST:PORT") from e
    # A mail server that hangs must cost an answer (503), not the worker: gunicorn kills it at 30 s.
    return sender, recipients, dataclasses.replace(upstream, timeout=min(upstream.timeout, SEND_TIMEOUT))


def _sent(answer: dict[str, Any], outcomes: list[Outcome]) -> int:
    """Add each copy's delivery to the answer; its status: 200 all went, 503 upstream down, else 502."""
    for entry, o in zip(answer["messages"], outcomes, strict=True):
        entry["delivery"] = {"ok": o.ok, "code": o.code, "reply": o.reply}
    delivered = sum(o.ok for o in outcomes)
    answer["delivered"] = delivered
    if delivered == len(outcomes):
        return 200
    answer["field"] = None
    if not any(o.reached for o in outcomes):
        answer["error"] = f"the mail server cannot be reached now; no copy was sent: {outcomes[0].text}"
        return 503
    failed = [o for o in outcomes if not o.ok]
    answer["error"] = (f"the mail server refused {len(failed)} of {len(outcomes)} copies (first: "
                       f"{failed[0].copy.recipient}: {failed[0].reply}); {delivered} were sent")
    return 502


# -- query parameters and logs (stats: api_stats) -------------------------------------------------------------------
def param(name: str) -> str | None:
    """The one value of a query parameter, or None; BadInput if it is given more than once."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise BadInput(f"{name} is given more than once", field=name)
    return values[0] if values else None


def time_param(name: str) -> str | None:
    """A query parameter as an ISO 8601 time, in the stored UTC form (no offset: UTC), or None."""
    value = param(name)
    if value is None:
        return None
    try:
        # An unescaped "+" in a query string arrives as a space: "…T10:00:00 02:00" means +02:00.
        t = datetime.fromisoformat(UNESCAPED_PLUS.sub(r"+\1", value.strip()))
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)  # a time without offset is taken as UTC
        return t.astimezone(UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError) as e:
        raise BadInput(f"{name} is not an ISO 8601 time such as 2026-12-01T00:00:00Z", field=name) from e


def message_param(name: str) -> int | None:
    """A query parameter as a message (attempt) id, or None; -1 for a well-formed id never issued."""
    value = param(name)
    if value is None:
        return None
    if not MESSAGE_KEY.match(value):
        raise BadInput(f"{name} is a message id: 16 hexadecimal digits", field=name)
    return parse_attempt_key(value.lower()) or -1  # well formed but never issued: matches nothing


def int_param(name: str, low: int, high: int, default: int | None) -> int | None:
    """A query parameter as a whole number from ``low`` to ``high``, else ``default``."""
    value = param(name)
    if value is None:
        return default
    # Length first: int() refuses more than 4,300 digits with a ValueError of its own.
    if not value.isascii() or not value.isdigit() or len(value) > len(str(high)) + 2 or not low <= int(value) <= high:
        raise BadInput(f"{name} is a whole number from {low} to {high}", field=name)
    return int(value)


def only_params(known: tuple[str, ...]) -> None:
    """Refuse any query parameter not in ``known``, naming it."""
    for name in request.args:
        if name not in known:
            raise BadInput(f"unknown parameter {shown(name)}", field=name)


@bp.get(f"/logs/<any({', '.join(export.LOG_NAMES)}):kind>", provide_automatic_options=False)
def logs(kind: str) -> Response:
    """Stream one raw log, oldest first, filtered, as JSON Lines, CSV or a JSON array."""
    only_params(LOG_PARAMS)
    fmt = param("format") or "jsonl"
    if fmt not in export.FORMATS:
        raise BadInput(f"format is one of {', '.join(export.FORMATS)}", field="format")
    scope = Scope(start=time_param("start"), end=time_param("end"), tag=param("tag"), attempt=message_param("message"),
                  recipient=param("recipient"))
    limit = int_param("limit", 1, MAX_LIMIT, None)
    store = ct().store
    after = param("after")
    columns: tuple[str, ...]
    if kind == "attempts":
        place = ("", 0)
        if after:
            found = store.attempt_place(parse_attempt_key(after) or 0)
            if found is None:
                raise BadInput("after names no message in this log", field="after")
            place = found
        rows = store.attempts(scope=scope, after=place)
        columns = export.ATTEMPT_COLUMNS
    else:
        seq = store.event_seq(after) if after else 0
        if seq is None:
            raise BadInput("after names no event in this log", field="after")
        rows = store.events(export.EVENT_LOGS[kind], after=seq, scope=scope)
        columns = export.EVENT_COLUMNS
    body = export.stream(rows, fmt, columns, limit)
    first = next(body, b"")  # the first chunk before the answer starts, so a failing store is still a 503
    ctype = export.FORMATS[fmt] + ("" if fmt == "json" else "; charset=utf-8")
    return Response(stream_with_context(itertools.chain([first], body)), content_type=ctype)


@bp.get("/openapi.json", provide_automatic_options=False)
def spec() -> Response:
    """This API, described in OpenAPI 3.1."""
    return jsonify(openapi.spec())


def unknown(_rest: str) -> Response:
    """Anything else under /api: 405 for a known path with another method, else 404 (as JSON)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint.startswith("api.") and endpoint != "api.unknown":
            allowed.append(method)
    if allowed and request.method == "OPTIONS":
        return Response(status=204, headers={"Allow": ", ".join([*allowed, "OPTIONS"])})
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed)
    raise NotFound("no such API endpoint; see /api/openapi.json")


class _Rest(BaseConverter):
    """The rest of a path under /api, whatever it is: nothing, or "/" and anything (doubled slashes too)."""

    regex = "(?:/.*)?"
    part_isolating = False
    weight = 1000  # below every other converter: real routes match first


def init_app(app: Flask) -> None:
    """Plug the API into the app."""
    from . import api_stats  # noqa: F401 - its route joins this blueprint

    app.register_blueprint(bp)
    app.url_map.converters["rest"] = _Rest
    # Rules without a method list match every method (Flask's own rules always name theirs), so any
    # other path or method under /api reaches ``unknown`` and is answered in JSON, never by the HTML pages.
    # They match /api and /api//stats as they are too: else routing answers with an HTML redirect
    # (to /api/, to /api/stats) before any handler of ours can answer in JSON.
    app.url_map.add(Rule("/api<rest:_rest>", endpoint="api.unknown"))
    app.view_functions["api.unknown"] = unknown
