"""The OpenAPI 3.1 document of /api, built from the same names the code uses.

tests/test_api.py checks that every /api route is described here, and a
schemathesis run against a live server checks the answers match it.
"""

from __future__ import annotations

from typing import Any

from . import export, submission, summary

API_VERSION = "1.0.0"
MESSAGE_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{16}$", "description": "A message (attempt) id."}


SEND = ("Also deliver each copy through the configured mail server (CLICKTRAIL_SMTP_UPSTREAM), from the from "
        "field or the From header of mime, to each recipient (none given: each address of To).")
IDENTITIES = {"from": "Messages whose From address is at this domain (or below).",
              "login": "Messages relayed for this SMTP login.", "api_key": "Messages sent with the API key of this name."}
EXAMPLE = {"html": '<p>New this week: <a href="https://shop.example.com/sale?id=7">the sale</a></p>',
           "subject": "This week", "from": "news@example.com", "recipients": ["ann@example.com", "bob@example.com"],
           "tag": "weekly", "trackclicks": True, "trackopens": True}
CONTENT_REQUIRED = [{"required": [name]} for name in submission.CONTENT]


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


ERRORS = {
    "400": _error("Bad input; `field` names the field or parameter (null for a body that cannot be read at all)."),
    "401": _error("Missing, wrong or revoked API key."),
    "404": _error("No such path (e.g. an unknown log name)."),
    "405": _error("The path exists but not with this method."),
    "503": _error("The store cannot be read or written now; try again."),
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


FILTERS = [
    _query("start", {"type": "string", "format": "date-time"}, "Rows at or after this time (ISO 8601; UTC if "
           "no offset)."),
    _query("end", {"type": "string", "format": "date-time"}, "Rows before this time (ISO 8601)."),
    _query("tag", {"type": "string"}, "Only this tag (empty: untagged)."),
    _query("message", MESSAGE_ID, "Only this message (attempt) id."),
    _query("recipient", {"type": "string"}, "Only this recipient (case-insensitive)."),
]


def _schemas() -> dict[str, Any]:
    text_or_null = _nullable("string")
    form_switch = {"type": "string", "enum": [*submission.FORM_TRUE, *submission.FORM_FALSE]}
    recipients = {"oneOf": [{"type": "string"}, {"type": "null"},
                            {"type": "array", "items": {"type": "string"}, "maxItems": submission.MAX_RECIPIENTS}],
                  "description": "One address, a comma-separated list, or an array of addresses; "
                                 "none: one copy to each address of the message's To."}
    common = {
        "mime": {**text_or_null, "description": "A whole MIME message; or give html and/or text."},
        "html": {**text_or_null, "description": "HTML body of a message clicktrail builds."},
        "text": {**text_or_null, "description": "Plain-text body of a message clicktrail builds."},
        "subject": {**text_or_null, "description": "Subject of a message built from html/text."},
        "from": {**text_or_null, "description": "From address of a message built from html/text."},
        "tag": {**text_or_null, "maxLength": submission.MAX_TAG, "description": "Campaign or category tag."},
    }
    event = {"type": "object", "required": ["id", "type", "time", "message"], "properties": {
        "id": {"type": "string", "description": "Stable event id; pass it as `after` to page on."},
        "type": {"type": "string", "enum": ["click", "open", "delivery", "failure"]},
        "kind": text_or_null, "time": {"type": "string", "format": "date-time"},
        "message": {"type": ["string", "null"]}, "recipient": text_or_null, "tag": text_or_null,
        "link": _nullable("integer"), "url": text_or_null, "ip": text_or_null, "user_agent": text_or_null,
        "message_id": text_or_null, "subject": text_or_null, "detail": text_or_null}}
    attempt = {"type": "object", "required": ["id", "type", "time", "message", "links"], "properties": {
        "id": {**MESSAGE_ID, "description": "The message id; pass it as `after` to page on."},
        "type": {"const": "attempt"}, "time": {"type": "string", "format": "date-time"}, "message": MESSAGE_ID,
        "recipient": text_or_null, "subject": text_or_null, "message_id": text_or_null, "tag": text_or_null,
        "track_clicks": {"type": "boolean"}, "track_opens": {"type": "boolean"},
        "links": {"type": "array", "items": {"type": "string"}}}}
    rate = {"type": "number", "minimum": 0}
    count = {"type": "integer", "minimum": 0}
    numbers = {"type": "object", "required": ["messages", "unique_opens", "total_opens", "unique_clicks",
                                              "total_clicks", "open_rate", "click_rate", "click_to_open_rate",
                                              "best_links"], "properties": {
        "messages": count, "unique_opens": count, "total_opens": count, "unique_clicks": count,
        "total_clicks": count, "open_rate": rate, "click_rate": rate, "click_to_open_rate": rate,
        "best_links": {"type": "array", "items": {"type": "object", "required": ["url", "unique_clicks"],
                                                  "properties": {"url": text_or_null, "unique_clicks": count,
                                                                 "total_clicks": count, "share": rate}}}}}
    return {
        "Error": {"type": "object", "required": ["error", "field"], "properties": {
            "error": {"type": "string"}, "field": text_or_null}},
        "MessageRequest": {"type": "object", "additionalProperties": False, "anyOf": CONTENT_REQUIRED, "properties": {
            **common, "recipients": recipients,
            "trackclicks": {**_nullable("boolean"), "description": "Rewrite links (default: configuration)."},
            "trackopens": {**_nullable("boolean"), "description": "Add the open pixel and track images."},
            "send": {**_nullable("boolean"), "description": SEND}}},
        "MessageForm": {"type": "object", "additionalProperties": False, "anyOf": CONTENT_REQUIRED, "properties": {
            **{k: {"type": "string", "description": v["description"]} for k, v in common.items()},
            "recipients": {"type": "array", "items": {"type": "string"}, "maxItems": submission.MAX_RECIPIENTS,
                           "description": "Repeat for many; none: one copy to each address of the To of mime."},
            "trackclicks": form_switch, "trackopens": form_switch, "send": {**form_switch, "description": SEND}}},
        "MessageResult": {"type": "object", "required": ["messages", "links", "track_clicks", "track_opens"],
                          "properties": {
            "messages": {"type": "array", "items": {"type": "object", "required": ["message", "mime", "encoding"],
                                                    "properties": {
                "message": MESSAGE_ID, "recipient": text_or_null,
                "mime": {"type": "string", "description": "The rewritten message of this recipient."},
                "encoding": {"type": "string", "enum": ["utf-8", "base64"],
                             "description": "base64 when the message is not UTF-8 text."},
                "delivery": {"$ref": "#/components/schemas/Delivery"}}}},
            "links": count, "track_clicks": {"type": "boolean"}, "track_opens": {"type": "boolean"},
            "delivered": {**count, "description": "With send: how many copies the mail server accepted."}}},
        "Delivery": {"type": "object", "required": ["ok", "code", "reply"],
                     "description": "With send: what the mail server answered for this copy.", "properties": {
            "ok": {"type": "boolean", "description": "True when the mail server accepted the copy."},
            "code": {"type": "integer", "minimum": 200, "maximum": 599},
            "reply": {"type": "string", "description": "The reply, e.g. 250 2.0.0 Ok: queued as 4F2B1."}}},
        "SendFailure": {"allOf": [{"$ref": "#/components/schemas/Error"},
                                  {"$ref": "#/components/schemas/MessageResult"}]},
        "ClickDomain": {"type": "object", "required": ["kind", "value", "domain", "host", "added"], "properties": {
            "kind": {"type": "string", "enum": ["api_key", "login", "from"]},
            "value": {"type": "string", "description": "The API key name, SMTP login or From domain."},
            "domain": {"type": "string", "description": "The click domain, as a base URL."},
            "host": {"type": "string", "description": "The Host its links work on."},
            "added": {"type": "string", "format": "date-time"}}},
        "ClickDomainRequest": {"type": "object", "additionalProperties": False, "required": ["domain"],
                               "oneOf": [{"required": [name]} for name in IDENTITIES], "properties": {
            "domain": {"type": "string", "minLength": 1, "description": "offers.example.com or https://…"},
            **{name: {"type": "string", "minLength": 1, "description": text} for name, text in IDENTITIES.items()}}},
        "Removed": {"type": "object", "required": ["removed"], "properties": {"removed": count}},
        "Event": event,
        "Attempt": attempt,
        "Numbers": numbers,
        "Stats": {"type": "object", "required": ["period", "totals", "tags", "messages", "next", "pending",
                                                 "updated_at"], "properties": {
            "period": {"type": ["object", "null"], "required": ["start", "end"],
                       "description": "The whole UTC hours counted (null bounds: all time); null with message.",
                       "properties": {"start": {"type": ["string", "null"], "format": "date-time"},
                                      "end": {"type": ["string", "null"], "format": "date-time"}}},
            "totals": {"$ref": "#/components/schemas/Numbers"},
            "tags": {"type": "array", "items": {"allOf": [
                {"$ref": "#/components/schemas/Numbers"},
                {"type": "object", "required": ["tag"], "properties": {
                    "tag": {"type": "string", "description": "The tag; empty for untagged messages."}}}]}},
            "messages": {"type": "array", "description": "Messages sent in the period, newest first, with their "
                                                         "opens and clicks so far.",
                         "items": {"$ref": "#/components/schemas/MessageStats"}},
            "next": {**MESSAGE_ID, "type": ["string", "null"],
                     "description": "Pass as after for the next page of messages; null on the last page."},
            "pending": {**count, "description": "Events recorded but not yet in these numbers."},
            "updated_at": {"type": ["string", "null"], "format": "date-time",
                           "description": "When the summaries were last folded."}}},
        "MessageStats": {"type": "object", "required": ["message", "time", "recipient", "subject", "tag",
                                                        "unique_opens", "total_opens", "unique_clicks",
                                                        "total_clicks"], "properties": {
            "message": MESSAGE_ID, "time": {"type": "string", "format": "date-time"}, "recipient": text_or_null,
            "subject": text_or_null, "tag": {"type": "string", "description": "Empty for untagged."},
            "unique_opens": {**count, "maximum": 1}, "total_opens": count,
            "unique_clicks": {**count, "maximum": 1}, "total_clicks": count}},
    }


def spec() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict each call)."""
    form = {"schema": {"$ref": "#/components/schemas/MessageForm"}}
    rows = {"anyOf": [{"$ref": "#/components/schemas/Event"}, {"$ref": "#/components/schemas/Attempt"}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clicktrail API", "version": API_VERSION,
                 "description": "Submit (and send) messages for tracking, download raw logs, read stats, "
                                "manage click domains."},
        "security": [{"bearer": []}],
        "paths": {
            "/api/messages": {"post": {
                "operationId": "submitMessage",
                "summary": "Rewrite a message for each recipient; record one attempt per copy.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/MessageRequest"},
                                         "example": EXAMPLE},
                    "application/x-www-form-urlencoded": form, "multipart/form-data": form}},
                "responses": {
                    "200": {"description": "One rewritten copy per recipient (with send: each accepted by the mail "
                                           "server).", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/MessageResult"}}}},
                    **ERRORS,
                    "502": {"description": "With send: the mail server refused some or all copies; each copy's "
                                           "delivery tells which went.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SendFailure"}}}},
                    "503": {"description": "The store cannot be written; or, with send, no mail server is "
                                           "configured, or it cannot be reached (then with the copies, none sent).",
                            "content": {"application/json": {"schema": {"anyOf": [
                                {"$ref": "#/components/schemas/SendFailure"},
                                {"$ref": "#/components/schemas/Error"}]}}}},
                    "413": _error("The body is over CLICKTRAIL_MAX_MESSAGE_BYTES; or the copies asked for are too "
                                  "much for one request (field recipients: send fewer recipients per request)."),
                    "415": _error("The body is not JSON or form data."),
                }}},
            "/api/logs/{kind}": {"get": {
                "operationId": "getLog",
                "summary": "Stream one raw log, oldest first.",
                "parameters": [
                    {"name": "kind", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": list(export.LOG_NAMES)}},
                    *FILTERS,
                    _query("format", {"type": "string", "enum": list(export.FORMATS), "default": "jsonl"},
                           "JSON Lines, CSV (formula cells neutralised) or one JSON array."),
                    _query("after", {"type": "string"}, "Continue after the row with this id."),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10_000_000},
                           "At most this many rows."),
                ],
                "responses": {
                    "200": {"description": "The rows.", "content": {
                        "application/x-ndjson": {"schema": {"type": "string"}},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"type": "array", "items": rows}}}},
                    **ERRORS,
                }}},
            "/api/stats": {"get": {
                "operationId": "getStats",
                "summary": "The stats page's numbers over a period: overall, per tag and per message.",
                "parameters": [
                    _query("start", {"type": "string", "format": "date-time"}, "From this time (ISO 8601; UTC "
                           "if no offset), widened to its whole UTC hour. Default: all time."),
                    _query("end", {"type": "string", "format": "date-time"}, "Before this time, widened to the "
                           "end of its UTC hour."),
                    _query("tag", {"type": "string"}, "Only this tag (empty: untagged messages)."),
                    _query("message", MESSAGE_ID, "Only this message (attempt), over all time; not with start, "
                           "end, tag or after."),
                    _query("links", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                           "How many best links to list."),
                    _query("limit", {"type": "integer", "minimum": 0, "maximum": summary.MAX_PAGE,
                                     "default": summary.PAGE}, "How many messages to list per page."),
                    _query("after", MESSAGE_ID, "List the messages after this one (the previous page's next)."),
                ],
                "responses": {"200": {"description": "The numbers.", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Stats"}}}}, **ERRORS}}},
            "/api/domains": {
                "get": {
                    "operationId": "listClickDomains",
                    "summary": "The default click domain and each sender identity's own.",
                    "responses": {"200": {"description": "The click domains.", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["default", "domains"], "properties": {
                            "default": {"type": "string"},
                            "domains": {"type": "array", "items": {"$ref": "#/components/schemas/ClickDomain"}}}}}}},
                        **ERRORS}},
                "post": {
                    "operationId": "addClickDomain",
                    "summary": "Give one sender identity its own click domain (replacing any it had).",
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ClickDomainRequest"},
                                             "example": {"domain": "offers.shop.example", "from": "shop.example"}},
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/ClickDomainRequest"}}}},
                    "responses": {"201": {"description": "Added.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/ClickDomain"}}}},
                        **ERRORS, "415": _error("The body is not JSON or form data.")}},
                "delete": {
                    "operationId": "removeClickDomainOf",
                    "summary": "Give one sender identity (one of the parameters) the default click domain again.",
                    "parameters": [_query(name, {"type": "string", "minLength": 1}, text)
                                   for name, text in IDENTITIES.items()],
                    "responses": {"200": {"description": "Removed.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Removed"}}}}, **ERRORS}},
            },
            "/api/domains/{domain}": {"delete": {
                "operationId": "removeClickDomain",
                "summary": "Stop answering on a click domain: remove it from every sender identity.",
                "parameters": [{"name": "domain", "in": "path", "required": True, "schema": {"type": "string"},
                                "description": "The click domain's host, e.g. offers.shop.example."}],
                "responses": {"200": {"description": "Removed; how many identities had it.", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Removed"}}}}, **ERRORS}}},
            "/api/openapi.json": {"get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, **ERRORS}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "A key from `clicktrail keys create --name NAME`."}},
            "schemas": _schemas(),
        },
    }
