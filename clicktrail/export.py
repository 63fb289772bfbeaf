"""Raw logs as downloads: rows in, text chunks out (JSON Lines, CSV or a JSON array), streamed.

Nothing here holds more than one chunk of rows: the store reads in batches and
each chunk is handed on as soon as it is written, so memory stays flat however
long the log is.  CSV cells that a spreadsheet would run as a formula (a
formula sign first, or after blanks) are neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

# Raw logs by the name in their URL: attempts, and each event type.
EVENT_LOGS = {"clicks": "click", "opens": "open", "deliveries": "delivery", "failures": "failure"}
LOG_NAMES = ("attempts", *EVENT_LOGS)
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv", "json": "application/json"}
EVENT_COLUMNS = ("id", "type", "kind", "time", "message", "recipient", "tag", "link", "url", "ip", "user_agent",
                 "message_id", "subject", "detail")
ATTEMPT_COLUMNS = ("id", "type", "time", "message", "recipient", "subject", "message_id", "tag", "track_clicks",
                   "track_opens", "links")
FORMULA_START = frozenset("=+-@\t\r")
FORMULA_SIGNS = frozenset("=+-@")
CHUNK_ROWS = 500
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every row: json.dumps makes one per call


def neutralise(cell: str) -> str:
    """Make a CSV cell that a spreadsheet would evaluate plain text, with a leading apostrophe."""
    first = cell[:1]
    # Spreadsheets skip leading blanks and line breaks before a formula sign, so " =1+1" runs too.
    if first in FORMULA_START or (first.isspace() and cell.lstrip()[:1] in FORMULA_SIGNS):
        return "'" + cell
    return cell


def _cell(value: Any) -> str:
    if value.__class__ is str:  # most cells, first
        return neutralise(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    return neutralise(str(value))


def _chunks(rows: Iterable[dict[str, Any]], limit: int | None) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for n, row in enumerate(rows, 1):
        row.pop("seq", None)  # the store's internal order; rows are paged by their id
        chunk.append(row)
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
        if limit is not None and n >= limit:
            break
    yield chunk


def stream(rows: Iterable[dict[str, Any]], fmt: str, columns: tuple[str, ...],
           limit: int | None = None) -> Iterator[bytes]:
    """Render rows in ``fmt`` (one of FORMATS) as UTF-8, a chunk of rows at a time."""
    # A stray surrogate (from a header that was not UTF-8) must not end a download half way.
    return (text.encode("utf-8", "replace") for text in _texts(rows, fmt, columns, limit))


def _texts(rows: Iterable[dict[str, Any]], fmt: str, columns: tuple[str, ...], limit: int | None) -> Iterator[str]:
    if fmt == "csv":
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\r\n")
        out.writerow(columns)
        for chunk in _chunks(rows, limit):
            out.writerows([*map(_cell, map(row.get, columns))] for row in chunk)
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    elif fmt == "json":
        opened = False
        for chunk in _chunks(rows, limit):
            if chunk:
                yield (",\n" if opened else "[\n") + ",\n".join(map(_to_json, chunk))
                opened = True
        yield "\n]\n" if opened else "[]\n"
    else:
        for chunk in _chunks(rows, limit):
            if chunk:
                yield "\n".join(map(_to_json, chunk)) + "\n"
