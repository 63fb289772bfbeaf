"""The period a dashboard page covers, and the timezone its times are shown in.

Everything is stored in UTC; a period is a range of whole UTC hours (the
grain of the summaries), chosen as the last 24 hours, 7 days, 30 days, or
custom dates read in the user's timezone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import BadInput

HOUR = timedelta(hours=1)
PRESETS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_SPAN = timedelta(days=400)


def zone(name: str) -> ZoneInfo:
    """The timezone of this IANA name; BadInput if there is none."""
    name = name.strip()
    if name not in timezones():
        raise BadInput(f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin or UTC", "tz")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise BadInput(f"unknown timezone {name!r}", "tz") from e


_ZONES: list[str] = []


def timezones() -> list[str]:
    """Every IANA timezone name this system knows, sorted (UTC first)."""
    if not _ZONES:
        _ZONES.extend(["UTC", *sorted(z for z in available_timezones() if z != "UTC")])
    return _ZONES


def floor_hour(t: datetime) -> datetime:
    """The start of the hour ``t`` falls in."""
    return t.replace(minute=0, second=0, microsecond=0)


def stamp(t: datetime) -> str:
    """A UTC time in the stored form (comparable as text with stored times)."""
    return t.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Period:
    name: str  # 24h, 7d, 30d or custom
    start: datetime  # UTC, on the hour
    end: datetime  # UTC, on the hour, exclusive
    tz: ZoneInfo

    @property
    def hourly(self) -> bool:
        """Chart by hour for short periods, by local day otherwise."""
        return self.end - self.start <= timedelta(hours=48)

    @property
    def first_hour(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H")

    @property
    def end_hour(self) -> str:
        return self.end.strftime("%Y-%m-%dT%H")

    def local(self, t: datetime) -> datetime:
        """``t`` in the user's timezone."""
        return t.astimezone(self.tz)

    @property
    def first_day(self) -> date:
        return self.local(self.start).date()

    @property
    def last_day(self) -> date:
        return self.local(self.end - timedelta(microseconds=1)).date()

    def query(self) -> dict[str, str]:
        """The URL parameters that choose this period again."""
        if self.name == "custom":
            return {"period": "custom", "from": self.first_day.isoformat(), "to": self.last_day.isoformat()}
        return {"period": self.name}


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as e:
        raise BadInput(f"{name}: {value!r} is not a date such as 2026-12-01", name) from e


def choose(args: Mapping[str, str], tz: ZoneInfo, now: datetime | None = None) -> Period:
    """Read the period from request parameters (``period``, and ``from``/``to`` for custom)."""
    now = now or datetime.now(UTC)
    name = args.get("period", "7d") or "7d"
    if name in PRESETS:
        end = floor_hour(now.astimezone(UTC)) + HOUR
        return Period(name, end - PRESETS[name], end, tz)
    if name != "custom":
        raise BadInput(f"period: {name!r} is not one of 24h, 7d, 30d, custom", "period")
    first, last = _day(args.get("from", ""), "from"), _day(args.get("to", ""), "to")
    if last < first:
        raise BadInput("the period ends before it starts: 'to' must be on or after 'from'", "to")
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC)
    start, end = floor_hour(start), floor_hour(end) + (HOUR if end != floor_hour(end) else timedelta())
    if end - start > MAX_SPAN:
        raise BadInput(f"the period is too long: at most {MAX_SPAN.days} days", "to")
    return Period("custom", start, end, tz)


def show(ts: str | None, tz: ZoneInfo) -> str:
    """A stored UTC time as the user reads it: local date, time and zone abbreviation."""
    if not ts:
        return ""
    t = datetime.fromisoformat(ts).astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M:%S ") + (t.tzname() or "")
