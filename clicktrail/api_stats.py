"""GET /api/stats: the stats page's numbers as JSON, read from the same summary tables (``summary``).

Over a period (``start``/``end``, whole UTC hours; by default all time), for
all tags or one ("" is untagged, as on the dashboard's tag page): the totals,
each tag's numbers, and the messages sent in the period, newest first, a page
at a time.  New events are folded into the summaries first (a bounded number),
so an answer costs about the same at a thousand or a million events.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, jsonify

from . import aggregate, summary
from .api import bp, int_param, message_param, only_params, param, time_param
from .errors import BadInput, ClicktrailError
from .periods import HOUR, Period, floor_hour, stamp
from .tracker import ct

log = logging.getLogger(__name__)

PARAMS = ("start", "end", "tag", "message", "links", "limit", "after")
ALL_TIME = Period("custom", datetime(1000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC), ZoneInfo("UTC"))
FOLD_BATCHES = 20  # at most 10,000 new events folded per answer: fresh numbers, and still a quick answer
ONE_MESSAGE_ONLY = ("start", "end", "tag", "after")


def _period() -> Period:
    """The period asked for, widened to whole UTC hours (the summaries' grain)."""
    start, end = time_param("start"), time_param("end")
    lo = datetime.fromisoformat(start) if start else ALL_TIME.start
    hi = datetime.fromisoformat(end) if end else ALL_TIME.end
    if hi <= lo:
        raise BadInput("end must be after start", field="end")
    lo, hi = floor_hour(max(lo, ALL_TIME.start)), min(hi, ALL_TIME.end)
    hi = hi if hi == floor_hour(hi) else floor_hour(hi) + HOUR
    return Period("custom", lo, max(lo, hi), ALL_TIME.tz)


def _fold() -> None:
    try:
        aggregate.fold(ct().store, max_batches=FOLD_BATCHES, check=False)
    except (sqlite3.Error, ClicktrailError, ValueError) as e:  # e.g. a read-only database: answer what is folded
        log.warning("stats: new events could not be folded now, answering from the summaries as they are: %s", e)


def _entry(m: dict[str, Any]) -> dict[str, Any]:
    return {"message": m["key"], "time": m["time"], "recipient": m["recipient"], "subject": m["subject"],
            "tag": m["tag"], "unique_opens": int(m["opened"]), "total_opens": m["opens"],
            "unique_clicks": int(m["clicked"]), "total_clicks": m["clicks"]}


def _answer(period: Period | None, totals: dict[str, Any], tags: list[dict[str, Any]],
            messages: list[dict[str, Any]], more: bool) -> Response:
    shown = None if period is None else {
        "start": None if period.start == ALL_TIME.start else stamp(period.start),
        "end": None if period.end == ALL_TIME.end else stamp(period.end)}
    fresh = summary.freshness(ct().store)
    return jsonify(period=shown, totals=totals, tags=tags, messages=[_entry(m) for m in messages],
                   next=messages[-1]["key"] if more and messages else None, pending=fresh["pending"],
                   updated_at=fresh["updated_at"])


@bp.get("/stats", provide_automatic_options=False)
def stats() -> Response:
    """Opens, clicks and rates over a period: overall, per tag, and per message (a page of them)."""
    only_params(PARAMS)
    links = int_param("links", 1, 100, 10) or 10
    limit = int_param("limit", 0, summary.MAX_PAGE, summary.PAGE)
    attempt = message_param("message")
    store = ct().store
    if attempt is not None:
        for name in ONE_MESSAGE_ONLY:
            if param(name) is not None:
                raise BadInput(f"message gives one message's numbers over all time: {name} cannot be added",
                               field=name)
        _fold()
        listed = summary.messages(store, ALL_TIME, attempt=attempt, limit=1)
        numbers = store.stats(links, attempt=attempt)  # one copy's own events, as its dashboard page reads them
        return _answer(None, numbers, [{"tag": m["tag"], **numbers} for m in listed], listed, False)
    period, tag = _period(), param("tag")
    after, last = None, message_param("after")
    if last is not None:
        after = store.attempt_place(last)
        if after is None:
            raise BadInput("after names no message", field="after")
    _fold()
    totals = summary.overview(store, period, tag, links)
    tags = [{"tag": tag, **totals}] if tag is not None else summary.by_tag(store, period, links)
    listed = summary.messages(store, period, tag, limit=limit, after=after) if limit else []
    return _answer(period, totals, tags, listed, len(listed) == limit)
