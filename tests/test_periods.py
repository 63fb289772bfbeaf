"""periods: every custom period a user can ask for is a page or a clear 400, in every timezone."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from test_dashboard import card, click, login, send

from clicktrail import aggregate, periods
from clicktrail.errors import BadInput
from clicktrail.tracker import Clicktrail

ZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata"]
EXTREMES = [  # (from, to, what the page says: None for a page)
    ("0001-01-01", "0001-01-02", "out of range"),
    ("0001-01-01", "2026-01-01", "out of range"),
    ("1969-12-31", "1970-01-01", "out of range"),
    ("1970-01-01", "1970-01-02", None),
    ("9998-12-30", "9998-12-31", None),
    ("9998-12-31", "9999-01-01", "out of range"),
    ("9999-12-30", "9999-12-31", "out of range"),
    ("9999-12-31", "9999-12-31", "out of range"),
]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("first, last, says", EXTREMES)
def test_extreme_custom_dates_are_a_page_or_a_clear_400(client: FlaskClient, tz: str, first: str, last: str,
                                                        says: str | None) -> None:
    login(client)
    with client.session_transaction() as session:
        session["tz"] = tz
    resp = client.get(f"/stats?period=custom&from={first}&to={last}")
    if says is None:
        assert resp.status_code == 200 and re.search(r'<svg id="chart"', resp.text)
    else:
        assert resp.status_code == 400 and says in resp.text and "1970-01-01 to 9998-12-31" in resp.text


@pytest.mark.parametrize("tz", ZONES)
def test_the_whole_allowed_range_reads_back_as_the_dates_asked_for(tz: str) -> None:
    for first, last in (("1970-01-01", "1970-01-31"), ("9998-12-01", "9998-12-31")):
        period = periods.choose({"period": "custom", "from": first, "to": last}, periods.zone(tz))
        assert period.query() == {"period": "custom", "from": first, "to": last}


def test_an_out_of_range_date_names_its_field() -> None:
    with pytest.raises(BadInput) as raised:
        periods.choose({"period": "custom", "from": "2026-01-01", "to": "9999-12-31"}, periods.zone("UTC"))
    assert raised.value.field == "to"


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "Australia/Eucla"])
def test_in_a_fractional_offset_zone_the_dates_asked_for_stay_and_each_day_has_24_hours(tz: str) -> None:
    period = periods.choose({"period": "custom", "from": "2026-03-01", "to": "2026-03-04"}, periods.zone(tz))
    assert period.query() == {"period": "custom", "from": "2026-03-01", "to": "2026-03-04"}  # Show again: the same
    assert (period.end - period.start).total_seconds() == 4 * 24 * 3600
    days = [period.day_of(period.start + periods.HOUR * i) for i in range(4 * 24)]
    assert [days.count(d) for d in sorted(set(days))] == [24] * 4


def test_a_half_hour_zone_counts_an_hour_on_the_day_it_ends_in(client: FlaskClient, parts: Clicktrail) -> None:
    (aid,) = send(parts.store, at=datetime(2026, 3, 1, tzinfo=UTC))
    click(parts.store, aid, 1, at=datetime(2026, 3, 1, 18, 45, tzinfo=UTC))  # 00:15 on 2 March in India
    aggregate.fold(parts.store)
    login(client)
    with client.session_transaction() as session:
        session["tz"] = "Asia/Kolkata"
    assert card(client.get("/stats?period=custom&from=2026-03-01&to=2026-03-01").text, "total-clicks") == "0"
    second = client.get("/stats?period=custom&from=2026-03-02&to=2026-03-02").text
    assert card(second, "total-clicks") == "1" and 'name="from" value="2026-03-02"' in second
    assert re.search(r'class="clicks"[^>]*data-value="1"><title>01 Mar 23:30: 1 clicks', second)  # hourly, from 23:30 local
    days = client.get("/stats?period=custom&from=2026-03-01&to=2026-03-04").text
    assert re.search(r'class="clicks"[^>]*data-value="1"><title>Mon 02 Mar: 1 clicks', days)
