"""The period a dashboard page covers, and the timezone its times are shown in.

Everything is stored in UTC; a period is a range of whole UTC hours (the
grain of the summaries), chosen as the last 24 hours, 7 days, 30 days, or
custom dates read in the user's timezone.  An hour belongs to the local day
it ends in, so in a zone with a half-hour offset (Asia/Kolkata) a day is the
24 UTC hours from the one its midnight falls in (23:30 to 23:30 local).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import BadInput

HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)
PRESETS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_SPAN = timedelta(days=400)
# Custom dates stay a year inside datetime's range, so a period, its days and
# its timezone offsets never overflow; no mail is that old or that far ahead.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


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

    def day_of(self, hour: datetime) -> date:
        """The local day an hour (given by its UTC start) counts towards: the one it ends in."""
        return self.local(hour + HOUR - TICK).date()

    @property
    def first_day(self) -> date:
        return self.day_of(self.start)

    @property
    def last_day(self) -> date:
        return self.day_of(self.end - HOUR)

    def query(self) -> dict[str, str]:
        """The URL parameters that choose this period again."""
        if self.name == "custom":
            return {"period": "custom", "from": self.first_day.isoformat(), "to": self.last_day.isoformat()}
        return {"period": self.name}


def _day(value: str, name: str) -> date:
    try:
        day = date.fromisoformat(value.strip())
    except ValueError as e:
        raise BadInput(f"{name}: {value!r} is not a date such as 2026-12-01", name) from e
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadInput(f"{name}: {day.isoformat()} is out of range: pick a date from {FIRST_DAY.isoformat()}"
                       f" to {LAST_DAY.isoformat()}", name)
    return day


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
    # Local midnights down to whole UTC hours, the summaries' grain: each hour then
    # falls in exactly one day (Period.day_of), and the dates read back as asked.
    start = floor_hour(datetime.combine(first, time(), tz).astimezone(UTC))
    end = floor_hour(datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC))
    if end - start > MAX_SPAN:
        raise BadInput(f"the period is too long: at most {MAX_SPAN.days} days", "to")
    return Period("custom", start, end, tz)


def show(ts: str | None, tz: ZoneInfo) -> str:
    """A stored UTC time as the user reads it: local date, time and zone abbreviation."""
    if not ts:
        return ""
    t = datetime.fromisoformat(ts).astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M:%S ") + (t.tzname() or "")
