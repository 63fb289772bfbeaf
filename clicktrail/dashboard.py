"""The dashboard's pages: overview, per tag (campaign), per message, and the timezone choice.

Pages read the summary tables (``summary``), never scan the raw events,
except one message's own events.  Everything a sender or reader wrote is
shown as escaped text (Jinja autoescape); a URL is never a live link.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from . import charts, periods, summary
from .errors import BadInput
from .logstore import parse_attempt_key
from .stats import bp, check_csrf, csrf_token, login_required, safe_next
from .tracker import ct


def user_zone() -> ZoneInfo:
    """The timezone this user picked, else the configured one."""
    picked = session.get("tz")
    if picked:
        try:
            return periods.zone(picked)
        except BadInput:
            session.pop("tz", None)  # no longer known to this system
    return periods.zone(ct().config["timezone"])


def _page(tag: str | None, picker: bool = False) -> str:
    tz = user_zone()
    period = periods.choose(request.args, tz)
    store = ct().store
    numbers = summary.overview(store, period, tag)
    buckets = summary.series(store, period, tag)
    tags = summary.tags(store, period)
    # The chosen tag stays a choice in a period without it, so "Show" keeps the filter.
    picks = [t["tag"] for t in tags if t["tag"]]
    if tag and tag not in picks:
        picks.append(tag)
    return render_template(
        "stats.html", s=numbers, chart=charts.opens_and_clicks(buckets), period=period, tag=tag, picker=picker,
        picks=picks, tags=tags, messages=summary.messages(store, period, tag),
        fresh=summary.freshness(store), show=lambda ts: periods.show(ts, tz), tz=tz, zones=periods.timezones(),
        csrf=csrf_token(), here=request.full_path.rstrip("?"), presets=list(periods.PRESETS), query=period.query(),
    )


@bp.route("/stats")
@login_required
def overview() -> str:
    """Messages, opens and clicks with rates, the chart and the best links, for a period and tag."""
    tag = request.args.get("tag") or None
    return _page(tag, picker=True)


@bp.route("/stats/tag")
@login_required
def tag_page() -> str | Response:
    """The same figures for one tag (campaign), with its messages; an empty tag means untagged."""
    if "tag" not in request.args:
        return redirect(url_for("stats.overview"))
    return _page(request.args["tag"])


@bp.route("/stats/message/<key>")
@login_required
def message(key: str) -> str | tuple[str, int]:
    """One copy of a message: recipient, subject, when sent, and each open and click."""
    aid = parse_attempt_key(key)
    found = summary.message(ct().store, aid) if aid is not None else None
    if found is None:
        return render_template("error.html", message=f"No message {key!r} is known here."), 404
    tz = user_zone()
    return render_template("message.html", m=found, show=lambda ts: periods.show(ts, tz), tz=tz,
                           zones=periods.timezones(), csrf=csrf_token(), here=request.full_path.rstrip("?"))


@bp.route("/stats/timezone", methods=["POST"])
@login_required
def timezone() -> Response:
    """Remember the timezone this user reads times in."""
    check_csrf()
    name = request.form.get("tz", "")
    periods.zone(name)  # BadInput (400, naming the field) for an unknown zone
    session["tz"] = name.strip()
    return redirect(safe_next(request.form.get("next")))
