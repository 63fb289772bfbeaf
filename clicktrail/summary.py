"""What the dashboard shows, read from the summary tables (and, for one message, its raw events).

The numbers follow ``Store.stats``; over a period they count the events in
it, with a copy's unique open or click falling in the hour of its first one.
Messages sent are the attempts recorded in the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .aggregate import high_water, pending, sent_until
from .logstore import Store, attempt_key
from .periods import HOUR, Period, stamp

BEST_LINKS = 10
RECENT = 25
PAGE, MAX_PAGE = 100, 1000  # messages listed per page of GET /api/stats: by default, at most
MESSAGE_EVENTS = 1000


def _rate(n: int, d: int) -> float:
    return (n / d) if d else 0.0


def _hours(period: Period, tag: str | None, table: str = "agg_hours") -> tuple[str, list[Any]]:
    where = f"{table}.hour >= ? AND {table}.hour < ?"
    params: list[Any] = [period.first_hour, period.end_hour]
    if tag is not None:
        where += f" AND {table}.tag = ?"
        params.append(tag)
    return where, params


def _attempts(period: Period, tag: str | None, start: datetime | None = None) -> tuple[str, list[Any]]:
    where = "a.ts >= ? AND a.ts < ?"
    params: list[Any] = [stamp(max(start or period.start, period.start)), stamp(period.end)]
    if tag == "":
        where += " AND (a.tag IS NULL OR a.tag = '')"
    elif tag is not None:
        where += " AND a.tag = ?"
        params.append(tag)
    return where, params


def sent(store: Store, period: Period, tag: str | None = None) -> dict[str, int]:
    """Messages (copies) sent in the period, per tag: folded hours, plus a live count of the last ones."""
    until = sent_until(store)
    counts: dict[str, int] = {}
    if until > period.start:
        folded = Period(period.name, period.start, min(period.end, until), period.tz)
        where, params = _hours(folded, tag, "agg_sent")
        for t, n in store.query(f"SELECT tag, SUM(messages) FROM agg_sent WHERE {where} GROUP BY tag", params):
            counts[t] = counts.get(t, 0) + int(n or 0)
    if until < period.end:
        where, params = _attempts(period, tag, start=until)
        for t, n in store.query(f"SELECT a.tag, COUNT(*) FROM attempts a WHERE {where} GROUP BY a.tag", params):
            counts[t or ""] = counts.get(t or "", 0) + int(n)
    return counts


def _days(period: Period) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """Split a period into edge hour ranges and whole UTC days between them (fewer rows to add up)."""
    first = period.start.replace(hour=0) + (timedelta(days=1) if period.start.hour else timedelta())
    last = period.end.replace(hour=0)
    fmt = lambda t: t.strftime("%Y-%m-%dT%H")  # noqa: E731
    if first >= last:
        return [(period.first_hour, period.end_hour)], None
    return ([(period.first_hour, fmt(first)), (fmt(last), period.end_hour)],
            (first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")))


def _link_counts(store: Store, period: Period, tag: str | None,
                 per_tag: bool = False) -> dict[str, dict[int, list[int]]]:
    """Unique and total clicks per URL id in the period (of one tag, or all), or per tag and URL id."""
    hours, days = _days(period)
    tag_sql, tag_params = ("", []) if tag is None else (" AND tag = ?", [tag])
    ranges = [("agg_link_hours", "hour", lo, hi) for lo, hi in hours if lo < hi]
    if days:
        ranges.append(("agg_link_days", "day", *days))
    counts: dict[str, dict[int, list[int]]] = {}
    for table, col, lo, hi in ranges:
        # Per tag only when asked: summed over tags, fewer rows come back.
        keys = "tag, url_id" if per_tag else "'', url_id"
        sql = (f"SELECT {keys}, SUM(unique_clicks), SUM(clicks) FROM {table} WHERE {col} >= ? AND {col} < ?{tag_sql}"
               f" GROUP BY {'tag, ' if per_tag else ''}url_id")
        for t_, uid, u, t in store.query(sql, [lo, hi, *tag_params]):
            c = counts.setdefault(t_, {}).setdefault(uid, [0, 0])
            c[0], c[1] = c[0] + int(u), c[1] + int(t)
    return counts


def best_links(store: Store, period: Period, tag: str | None, unique_clicks: int,
               limit: int = BEST_LINKS) -> list[dict[str, Any]]:
    """The links with most unique clickers in the period, with their share of all clickers."""
    counts: dict[int, list[int]] = {}
    for per_url in _link_counts(store, period, tag).values():
        for uid, (u, t) in per_url.items():
            c = counts.setdefault(uid, [0, 0])
            c[0], c[1] = c[0] + u, c[1] + t
    return _ranked(store, counts, unique_clicks, limit)


def _ranked(store: Store, counts: dict[int, list[int]], unique_clicks: int, limit: int) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1][0], -kv[1][1]))
    if len(ranked) > limit:  # keep the ties of the last place: the URL decides among them
        last = ranked[limit - 1][1]
        ranked = [r for r in ranked if (r[1][0], r[1][1]) >= (last[0], last[1])]
    urls: dict[int, str] = {}
    for i in range(0, len(ranked), 400):
        ids = [uid for uid, _ in ranked[i:i + 400]]
        urls.update(store.query(f"SELECT url_id, url FROM agg_urls WHERE url_id IN ({','.join('?' * len(ids))})", ids))
    best = sorted(((urls.get(uid, ""), u, t) for uid, (u, t) in ranked if u or t), key=lambda r: (-r[1], -r[2], r[0]))
    return [{"url": url, "unique_clicks": u, "total_clicks": t, "share": min(1.0, _rate(u, unique_clicks))}
            for url, u, t in best[:limit]]


def _numbers(messages: int, opens: int, unique_opens: int, clicks: int, unique_clicks: int,
             best: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "messages": messages, "unique_opens": unique_opens, "total_opens": opens,
        "unique_clicks": unique_clicks, "total_clicks": clicks,
        "open_rate": _rate(unique_opens, messages), "click_rate": _rate(unique_clicks, messages),
        "click_to_open_rate": _rate(unique_clicks, unique_opens), "best_links": best,
    }


def overview(store: Store, period: Period, tag: str | None = None, limit: int = BEST_LINKS) -> dict[str, Any]:
    """Messages, unique and total opens and clicks, rates and best links for a period (and tag)."""
    where, params = _hours(period, tag)
    opens, unique_opens, clicks, unique_clicks = (int(v or 0) for v in store.query(
        f"SELECT SUM(opens), SUM(unique_opens), SUM(clicks), SUM(unique_clicks) FROM agg_hours WHERE {where}",
        params)[0])
    messages = sum(sent(store, period, tag).values())
    return _numbers(messages, opens, unique_opens, clicks, unique_clicks,
                    best_links(store, period, tag, unique_clicks, limit))


def by_tag(store: Store, period: Period, limit: int = BEST_LINKS) -> list[dict[str, Any]]:
    """``overview`` of each tag with messages or events in the period ("" is untagged), in one read of each table."""
    where, params = _hours(period, None)
    sums = {tag: [int(v or 0) for v in rest] for tag, *rest in store.query(
        f"SELECT tag, SUM(opens), SUM(unique_opens), SUM(clicks), SUM(unique_clicks) FROM agg_hours WHERE {where}"
        " GROUP BY tag", params)}
    counts = sent(store, period)
    links = _link_counts(store, period, None, per_tag=True)
    found = []
    for tag in set(sums) | set(counts):
        opens, unique_opens, clicks, unique_clicks = sums.get(tag, [0, 0, 0, 0])
        best = _ranked(store, links.get(tag, {}), unique_clicks, limit)
        found.append({"tag": tag, **_numbers(counts.get(tag, 0), opens, unique_opens, clicks, unique_clicks, best)})
    return sorted(found, key=lambda r: (-r["messages"], r["tag"]))  # as ``tags`` lists them


@dataclass
class Bucket:
    start: datetime  # local time
    label: str
    opens: int = 0
    clicks: int = 0


def series(store: Store, period: Period, tag: str | None = None) -> list[Bucket]:
    """Total opens and clicks per hour (short periods) or per local day."""
    where, params = _hours(period, tag)
    rows = store.query(f"SELECT hour, SUM(opens), SUM(clicks) FROM agg_hours WHERE {where} GROUP BY hour", params)
    buckets: dict[Any, Bucket] = {}
    if period.hourly:
        t = period.start
        while t < period.end:
            local = period.local(t)
            buckets[t.strftime("%Y-%m-%dT%H")] = Bucket(local, local.strftime("%d %b %H:%M"))
            t += HOUR
    else:
        d = period.first_day
        while d <= period.last_day:
            buckets[d] = Bucket(datetime(d.year, d.month, d.day, tzinfo=period.tz), d.strftime("%a %d %b"))
            d += timedelta(days=1)
    for hour, o, c in rows:
        if period.hourly:
            key: Any = hour
        else:
            key = period.day_of(datetime.fromisoformat(hour + ":00:00+00:00"))
        b = buckets.get(key)
        if b is not None:
            b.opens += int(o or 0)
            b.clicks += int(c or 0)
    return list(buckets.values())


def tags(store: Store, period: Period) -> list[dict[str, Any]]:
    """Tags with messages or events in the period, with their counts."""
    found: dict[str, dict[str, Any]] = {}
    for tag, n in sent(store, period).items():
        found[tag] = {"tag": tag, "messages": n, "unique_opens": 0, "unique_clicks": 0}
    where, params = _hours(period, None)
    for tag, uo, uc in store.query(
            f"SELECT tag, SUM(unique_opens), SUM(unique_clicks) FROM agg_hours WHERE {where} GROUP BY tag", params):
        row = found.setdefault(tag, {"tag": tag, "messages": 0, "unique_opens": 0, "unique_clicks": 0})
        row["unique_opens"], row["unique_clicks"] = int(uo or 0), int(uc or 0)
    return sorted(found.values(), key=lambda r: (-r["messages"], r["tag"]))


def messages(store: Store, period: Period, tag: str | None = None, limit: int = RECENT,
             after: tuple[str, int] | None = None, attempt: int | None = None) -> list[dict[str, Any]]:
    """The latest messages (copies) sent in the period, with their opens and clicks so far (``after``: a page on)."""
    where, params = _attempts(period, tag)
    if after is not None:  # the (time, id) of the last one listed, in this order
        where += " AND (a.ts < ? OR (a.ts = ? AND a.id > ?))"
        params += [after[0], after[0], after[1]]
    if attempt is not None:
        where += " AND a.id = ?"
        params.append(attempt)
    return [
        {"key": attempt_key(aid), "time": ts, "recipient": rcpt, "subject": subject, "tag": t or "",
         "opens": int(px or 0) or (1 if fi or fc else 0), "clicks": int(cl or 0), "opened": fo is not None,
         "clicked": fc is not None}
        for aid, ts, rcpt, subject, t, px, fi, cl, fo, fc in store.query(
            "SELECT a.id, a.ts, a.recipient, a.subject, a.tag, g.pixels, g.first_image, g.clicks, g.first_open,"
            " g.first_click FROM attempts a LEFT JOIN agg_attempts g ON g.attempt_id = a.id"
            f" WHERE {where} ORDER BY a.ts DESC, a.id LIMIT ?", [*params, limit])
    ]


def message(store: Store, attempt_id: int) -> dict[str, Any] | None:
    """One copy: who, what, when, and each open and click (read live from the raw events)."""
    rows = store.query("SELECT id, ts, recipient, subject, message_id, tag FROM attempts WHERE id = ?", (attempt_id,))
    if not rows:
        return None
    aid, ts, rcpt, subject, message_id, tag = rows[0]
    events = [
        {"seq": seq, "type": type_, "kind": kind, "time": t, "url": url, "ip": ip, "user_agent": ua}
        for seq, type_, kind, t, url, ip, ua in store.query(
            "SELECT seq, type, kind, ts, url, ip, user_agent FROM events WHERE attempt_id = ?"
            " AND type IN ('open', 'click') ORDER BY ts, seq LIMIT ?", (aid, MESSAGE_EVENTS))
    ]
    opens = [e for e in events if e["type"] == "open"]
    pixels = sum(1 for e in opens if e["kind"] == "pixel")
    clicks = [e for e in events if e["type"] == "click"]
    return {
        "key": attempt_key(aid), "time": ts, "recipient": rcpt, "subject": subject, "message_id": message_id,
        "tag": tag or "", "events": events,
        "total_opens": pixels or (1 if clicks or any(e["kind"] == "image" for e in opens) else 0),  # a click is an open
        "total_clicks": len(clicks), "links_clicked": len({e["url"] for e in clicks}),
        "truncated": len(events) >= MESSAGE_EVENTS,
    }


def freshness(store: Store) -> dict[str, Any]:
    """When the summaries were last folded and how many events wait."""
    updated = store.query("SELECT updated_at FROM agg_state WHERE name = 'events'")[0][0]
    return {"updated_at": updated, "seq": high_water(store), "pending": pending(store),
            "now": datetime.now(UTC)}
