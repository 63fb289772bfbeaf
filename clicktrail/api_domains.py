"""/api/domains: the click domains of sender identities, as ``clicktrail domains`` manages them.

Nested in the API blueprint (api.py), so the same key check and JSON errors
apply.  A sender identity is named by exactly one of ``from`` (a From domain),
``login`` (an SMTP login) or ``api_key`` (an API key's name), as on the CLI.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import NotFound, UnsupportedMediaType

from . import domains, formdata
from .errors import BadInput, shown
from .tracker import ct

bp = Blueprint("domains", __name__)
IDENTITIES = {"from": "from", "login": "login", "api_key": "api_key"}  # field name -> identity kind
ADD_FIELDS = ("domain", *IDENTITIES)
MAX_TEXT = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def entry_json(e: domains.Entry) -> dict[str, str]:
    """One identity's click domain, as the API shows it."""
    return {"kind": e.kind, "value": e.value, "domain": e.base, "host": domains.host_of(e.base), "added": e.added}


def _body() -> dict[str, Any]:
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data())
        except (ValueError, RecursionError) as e:
            raise BadInput(f"the body is not valid JSON: {e}") from e
        if not isinstance(body, dict):
            raise BadInput("the JSON body must be an object")
        return body
    if request.mimetype == "multipart/form-data":
        fields = formdata.multipart(request.get_data(), request.mimetype_params.get("boundary"))
    elif request.mimetype == "application/x-www-form-urlencoded":
        fields = formdata.urlencoded(request.get_data())
    else:
        raise UnsupportedMediaType("send application/json or form data")
    values: dict[str, Any] = {}
    for name, value in fields:
        if name in values:
            raise BadInput(f"{shown(name)} is given more than once", field=name)
        try:
            values[name] = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{shown(name)} is not UTF-8 text", field=name) from e
    return values


def _text(values: dict[str, Any], name: str) -> str:
    value = values[name]
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT or _CONTROL.search(value):
        raise BadInput(f"{name} must be a non-empty string of at most {MAX_TEXT} characters, without control "
                       "characters", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{name} is not valid Unicode text", field=name) from e
    return value


def _identity(values: dict[str, Any]) -> tuple[str, str, str]:
    """The (kind, value, field) of the one sender identity named in ``values``."""
    given = [name for name in IDENTITIES if name in values]
    if len(given) != 1:
        raise BadInput("name exactly one sender identity: from (a domain), login or api_key",
                       field=given[1] if given else None)
    name = given[0]
    value = _text(values, name)
    return IDENTITIES[name], value, name


def _checked(field: str, call: Any, *args: Any) -> Any:
    """Run a domains function; its BadInput names ``field``."""
    try:
        return call(*args)
    except BadInput as e:
        raise BadInput(e.message, field=e.field or field) from e


@bp.get("", provide_automatic_options=False)
def list_domains() -> Response:
    """The default click domain and every sender identity's own."""
    parts = ct()
    return jsonify(default=parts.config["click_domain"], domains=[entry_json(e) for e in domains.entries(parts.store)])


@bp.post("", provide_automatic_options=False)
def add_domain() -> Response:
    """Give a sender identity its own click domain (replacing any it had)."""
    values = _body()
    for name in values:
        if name not in ADD_FIELDS:
            raise BadInput(f"unknown field {shown(name)}", field=name)
    if "domain" not in values:
        raise BadInput("domain is missing: the click domain, such as offers.example.com", field="domain")
    domain = _text(values, "domain")
    kind, value, field = _identity(values)
    _checked(field, domains.identity, kind, value)  # a bad identity is named before the domain is read
    parts = ct()
    entry = _checked("domain", domains.add, parts.store, kind, value, domain, domains.own_names(parts.config))
    resp = jsonify(entry_json(entry))
    resp.status_code = 201
    return resp


@bp.delete("", provide_automatic_options=False)
def remove_identity() -> Response:
    """Give a sender identity the default click domain again (``?from=`` | ``?login=`` | ``?api_key=``)."""
    for name in request.args:
        if name not in IDENTITIES:
            raise BadInput(f"unknown parameter {shown(name)}", field=name)
        if len(request.args.getlist(name)) > 1:
            raise BadInput(f"{name} is given more than once", field=name)
    kind, value, field = _identity(request.args.to_dict())
    if not _checked(field, domains.remove, ct().store, kind, value):
        raise NotFound(f"the {domains.KIND_NAMES[kind]} {shown(value.strip())} has no click domain of its own")
    return jsonify(removed=1)


@bp.delete("/<domain>", provide_automatic_options=False)
def remove_domain(domain: str) -> Response:
    """Stop answering on a click domain: remove it from every sender identity."""
    if request.args:
        raise BadInput(f"unknown parameter {shown(next(iter(request.args)))}", field=next(iter(request.args)))
    n = _checked("domain", domains.remove_domain, ct().store, domain)
    if not n:
        raise NotFound(f"{shown(domain)} is not a configured click domain")
    return jsonify(removed=n)
