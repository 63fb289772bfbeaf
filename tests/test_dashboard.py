"""The stats dashboard: login, summaries that match Store.stats, periods, tags, messages, timezones, escaping."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import html5lib
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from werkzeug.security import check_password_hash, generate_password_hash

from clicktrail import aggregate, periods, stats, summary
from clicktrail.cli import main
from clicktrail.errors import ConfigError
from clicktrail.logstore import Attempt, Event, Store, attempt_key, new_id
from clicktrail.tracker import Clicktrail, create_app

NOW = datetime.now(UTC)
URLS = ["https://shop.example.com/sale?id=7", "https://shop.example.com/", "https://blog.example.com/post",
        "https://example.org/unsubscribe"]


@pytest.fixture
def settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The shared settings, without waiting for the disk on every one of the many events written here."""
    return {**settings, "sync": False}


def ts(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def send(store: Store, n: int = 1, tag: str | None = "winter", at: datetime | None = None,
         subject: str = "Winter sale", recipient: str = "reader{}@example.com") -> list[int]:
    """Record one message with the links of URLS to ``n`` recipients; return the attempt ids."""
    attempts = [Attempt(new_id(), recipient.format(i), subject, f"<m{i}@example.com>", tag, ts=ts(at or NOW))
                for i in range(n)]
    store.record_message([("click", u) for u in URLS], attempts)
    return [a.id for a in attempts]


def click(store: Store, aid: int, idx: int, at: datetime | None = None, ua: str = "Mozilla/5.0",
          url: str | None = None) -> None:
    store.add_event(Event("click", aid, idx, url or URLS[idx - 1], ip="192.0.2.7", user_agent=ua, ts=ts(at or NOW)))


def view(store: Store, aid: int, kind: str = "pixel", at: datetime | None = None, ua: str = "Mozilla/5.0") -> None:
    store.add_event(Event("open", aid, 0 if kind == "pixel" else 9, None, kind=kind, ip="192.0.2.8",
                          user_agent=ua, ts=ts(at or NOW)))


def login(client: FlaskClient, password: str = "s3cret-pass", user: str = "", next_: str = "") -> Any:
    page = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return client.post("/login", data={"csrf": token, "user": user, "password": password, "next": next_})


def csrf(client: FlaskClient, path: str = "/stats") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)  # type: ignore[union-attr]


def card(page: str, name: str) -> str:
    return re.search(rf'id="{name}"><b>([^<]*)</b>', page).group(1)  # type: ignore[union-attr]


def random_traffic(store: Store, seed: int, attempts: int = 60, events: int = 900) -> None:
    """Opens (pixel and image), clicks, repeats and late (replayed, earlier-stamped) events."""
    rnd = random.Random(seed)
    ids: list[int] = []
    for tag in ("winter", "news", None):
        ids += send(store, attempts // 3, tag, at=NOW - timedelta(days=3))
    for _ in range(events):
        aid = rnd.choice(ids)
        at = NOW - timedelta(hours=rnd.uniform(0, 70))
        r = rnd.random()
        if r < 0.35:
            view(store, aid, "pixel", at)
        elif r < 0.6:
            view(store, aid, "image", at)
        else:
            idx = rnd.randrange(1, len(URLS) + 1)
            click(store, aid, idx, at)


# -- counting ---------------------------------------------------------------------------------------------------


def _all_time(parts: Clicktrail) -> dict[str, Any]:
    """The summaries over all time, in the shape of Store.stats()."""
    end = NOW.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    return summary.overview(parts.store, periods.Period("custom", datetime(2000, 1, 1, tzinfo=UTC), end,
                                                           periods.zone("UTC")))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("batch", [7, 2000])
def test_summaries_match_store_stats(parts: Clicktrail, seed: int, batch: int) -> None:
    random_traffic(parts.store, seed)
    while aggregate.fold_batch(parts.store, limit=batch):
        pass
    assert _all_time(parts) == parts.store.stats()


def test_folding_is_incremental_and_equals_a_rebuild(parts: Clicktrail) -> None:
    random_traffic(parts.store, 4, events=300)
    assert aggregate.fold(parts.store) == 300
    first = _all_time(parts)
    random_traffic(parts.store, 5, events=300)
    assert aggregate.pending(parts.store) == 300
    assert aggregate.fold(parts.store) == 300
    assert aggregate.fold(parts.store) == 0
    incremental = _all_time(parts)
    assert incremental != first
    assert incremental == parts.store.stats()
    assert aggregate.rebuild(parts.store) == 600
    assert _all_time(parts) == incremental


def test_images_alone_count_one_open_until_the_pixel_arrives(parts: Clicktrail) -> None:
    (aid,) = send(parts.store)
    view(parts.store, aid, "image")
    view(parts.store, aid, "image")
    aggregate.fold(parts.store)
    assert (_all_time(parts)["total_opens"], _all_time(parts)["unique_opens"]) == (1, 1)
    view(parts.store, aid, "pixel")
    view(parts.store, aid, "pixel")
    aggregate.fold(parts.store)
    assert (_all_time(parts)["total_opens"], _all_time(parts)["unique_opens"]) == (2, 1)
    assert _all_time(parts) == parts.store.stats()


def test_a_late_earlier_event_moves_the_unique_to_its_hour(client: FlaskClient, parts: Clicktrail) -> None:
    (aid,) = send(parts.store, at=NOW - timedelta(days=5))
    click(parts.store, aid, 1, at=NOW)
    aggregate.fold(parts.store)
    click(parts.store, aid, 1, at=NOW - timedelta(days=4))  # replayed from the spool, stamped earlier
    aggregate.fold(parts.store)
    login(client)
    last_day = client.get("/stats?period=24h").text
    assert (card(last_day, "unique-clicks"), card(last_day, "total-clicks")) == ("0", "1")
    week = client.get("/stats?period=7d").text
    assert (card(week, "unique-clicks"), card(week, "total-clicks")) == ("1", "2")


def test_a_batch_folded_meanwhile_by_another_worker_is_not_counted_twice(
        parts: Clicktrail, monkeypatch: pytest.MonkeyPatch) -> None:
    random_traffic(parts.store, 6, events=200)
    aggregate.fold(parts.store)
    folded = _all_time(parts)
    monkeypatch.setattr(aggregate, "high_water", lambda store: 0)  # a worker that read the mark before the fold
    assert aggregate.fold_batch(parts.store) == 0
    monkeypatch.undo()
    assert _all_time(parts) == folded == parts.store.stats()


def test_workers_folding_at_once_count_each_event_once(parts: Clicktrail) -> None:
    random_traffic(parts.store, 7, events=1500)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while aggregate.fold_batch(parts.store, limit=50) or aggregate.pending(parts.store):
                pass
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)
        finally:
            parts.store.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _all_time(parts) == parts.store.stats()


# -- pages ------------------------------------------------------------------------------------------------------


def test_pages_need_a_login(client: FlaskClient) -> None:
    for path in ("/stats", "/stats/tag?tag=winter", "/stats/message/0123456789abcdef"):
        resp = client.get(path)
        assert resp.status_code == 302
        assert resp.headers["Location"].startswith("/login?next=")


def test_login_sets_a_private_session_cookie_and_logout_ends_it(client: FlaskClient) -> None:
    assert login(client, "wrong").status_code == 401
    resp = login(client, next_="/stats?period=24h")
    assert resp.status_code == 302 and resp.headers["Location"] == "/stats?period=24h"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # the click domain is https
    assert client.get("/stats").status_code == 200
    assert client.post("/logout", data={}).status_code == 400  # no CSRF token, no logout
    assert client.post("/logout", data={"csrf": csrf(client)}).status_code == 302
    assert client.get("/stats").status_code == 302


def test_no_secure_cookie_on_plain_http(settings: dict[str, Any]) -> None:
    client = create_app({**settings, "click_domain": "http://127.0.0.1:8000"}).test_client()
    assert "Secure" not in login(client).headers["Set-Cookie"]


@pytest.mark.parametrize("proxies, base, headers, secure", [
    (0, "https://127.0.0.1:8000", {}, True),  # TLS to the app itself
    (1, "http://127.0.0.1:8000", {"X-Forwarded-Proto": "https"}, True),  # TLS to nginx in front
    (0, "http://127.0.0.1:8000", {"X-Forwarded-Proto": "https"}, False),  # a client's claim, not believed
    (1, "http://127.0.0.1:8000", {"X-Forwarded-Proto": "http"}, False),
])
def test_the_cookie_is_secure_when_the_request_came_over_tls(settings: dict[str, Any], proxies: int, base: str,
                                                             headers: dict[str, str], secure: bool) -> None:
    app = create_app({**settings, "click_domain": "http://127.0.0.1:8000", "trusted_proxies": proxies})
    client = app.test_client()
    page = client.get("/login", base_url=base, headers=headers).text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = client.post("/login", base_url=base, headers=headers, data={"csrf": token, "password": "s3cret-pass"})
    assert resp.status_code == 302 and ("; Secure" in resp.headers["Set-Cookie"]) == secure


def test_login_needs_the_form_token(client: FlaskClient) -> None:
    client.get("/login")
    assert client.post("/login", data={"password": "s3cret-pass"}).status_code == 400


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/stats", "/stats\\@evil", "/elsewhere"])
def test_login_never_sends_elsewhere(client: FlaskClient, target: str) -> None:
    assert login(client, next_=target).headers["Location"] == "/stats"


def test_users_log_in_with_hashed_passwords(settings: dict[str, Any]) -> None:
    users = f"ann:{generate_password_hash('ann-pass-1')},bob:{generate_password_hash('bob-pass-2')}"
    app = create_app({**settings, "stats_password": None, "stats_users": users})
    client = app.test_client()
    assert login(client, "bob-pass-2", user="ann").status_code == 401
    assert login(client, "ann-pass-1", user="nobody").status_code == 401
    assert login(client, "ann-pass-1").status_code == 401  # no shared password configured
    assert login(client, "bob-pass-2", user="bob").status_code == 302


def test_an_unknown_user_costs_a_hash_check_like_a_known_one(settings: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    users = f"ann:{generate_password_hash('ann-pass-1')}"
    client = create_app({**settings, "stats_password": None, "stats_users": users}).test_client()
    checked: list[str] = []
    real = stats.check_password_hash
    monkeypatch.setattr(stats, "check_password_hash", lambda h, p: checked.append(p) or real(h, p))
    assert login(client, "ann-pass-1", user="nobody").status_code == 401
    assert login(client, "wrong-pass", user="ann").status_code == 401
    assert checked == ["ann-pass-1", "wrong-pass"]  # the same work whether or not the user exists


def test_a_hashed_shared_password(settings: dict[str, Any]) -> None:
    client = create_app({**settings, "stats_password": generate_password_hash("long-pass-9")}).test_client()
    assert login(client, "long-pass-9").status_code == 302


def test_a_user_entry_without_a_hash_stops_start_up(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="CLICKTRAIL_STATS_USERS.*ann"):
        create_app({**settings, "stats_users": "ann:plaintext"})


@pytest.mark.parametrize("cut", ["scrypt:32768:8:1", "pbkdf2:sha256:600000", "scrypt:32768:8:1$salt"])
def test_a_hash_cut_short_by_a_shell_stops_start_up(settings: dict[str, Any], cut: str) -> None:
    with pytest.raises(ConfigError, match=r"CLICKTRAIL_STATS_PASSWORD is a password hash cut short.*single quotes"):
        create_app({**settings, "stats_password": cut})


def test_dashboard_on_without_a_password_refuses_to_start(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="no default password"):
        create_app({**settings, "stats_password": None, "dashboard": "on"})


def test_without_a_password_the_tracker_runs_and_the_dashboard_says_it_is_off(
        settings: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app({**settings, "stats_password": None})
    assert "stats dashboard off" in caplog.text
    parts: Clicktrail = app.extensions["clicktrail"]
    (aid,) = send(parts.store)
    client = app.test_client()
    link = client.get(f"/{parts.signer.mint(aid, 1)}/sale")
    assert link.status_code == 302 and link.headers["Location"] == URLS[0]
    for path in ("/stats", "/login"):
        resp = client.get(path)
        assert resp.status_code == 404 and "CLICKTRAIL_STATS_PASSWORD" in resp.text


def test_dashboard_off_keeps_it_off_even_with_a_password(settings: dict[str, Any]) -> None:
    client = create_app({**settings, "dashboard": "off"}).test_client()
    assert client.get("/login").status_code == 404


def test_overview_shows_counts_rates_chart_and_best_links(client: FlaskClient, parts: Clicktrail) -> None:
    ids = send(parts.store, 4)
    view(parts.store, ids[0])
    view(parts.store, ids[0])
    view(parts.store, ids[1], "image")
    click(parts.store, ids[0], 1)
    click(parts.store, ids[0], 1)
    click(parts.store, ids[1], 3)
    aggregate.fold(parts.store)
    login(client)
    page = client.get("/stats?period=24h").text
    shown = {k: card(page, k) for k in ("messages", "unique-opens", "total-opens", "unique-clicks", "total-clicks",
                                        "open-rate", "click-rate", "click-to-open-rate")}
    assert shown == {"messages": "4", "unique-opens": "2", "total-opens": "3", "unique-clicks": "2",
                     "total-clicks": "3", "open-rate": "50.0%", "click-rate": "50.0%", "click-to-open-rate": "100.0%"}
    assert '<svg id="chart"' in page
    assert sum(int(v) for v in re.findall(r'class="opens"[^>]*data-value="(\d+)"', page)) == 3
    assert sum(int(v) for v in re.findall(r'class="clicks"[^>]*data-value="(\d+)"', page)) == 3
    best = page.split('id="best-links"')[1].split("</table>")[0]
    rows = re.findall(r'<td class="url">([^<]*)</td><td class="n">(\d+)</td><td class="n">(\d+)</td>'
                      r'<td class="n">(\d+)%</td>', best)
    assert rows == [(URLS[0].replace("&", "&amp;"), "1", "2", "50"), (URLS[2], "1", "1", "50")]
    assert "<script" not in page and "href=\"https://shop" not in page


def test_periods_and_tags_filter(client: FlaskClient, parts: Clicktrail) -> None:
    old = send(parts.store, 2, "autumn", at=NOW - timedelta(days=20))
    new = send(parts.store, 3, "winter", at=NOW - timedelta(hours=2))
    click(parts.store, old[0], 2, at=NOW - timedelta(days=19))
    click(parts.store, new[0], 1, at=NOW - timedelta(hours=1))
    view(parts.store, new[1], at=NOW - timedelta(hours=1))
    aggregate.fold(parts.store)
    login(client)
    day = client.get("/stats?period=24h").text
    assert (card(day, "messages"), card(day, "unique-clicks"), card(day, "unique-opens")) == ("3", "1", "2")
    month = client.get("/stats?period=30d").text
    assert (card(month, "messages"), card(month, "unique-clicks")) == ("5", "2")
    autumn = client.get("/stats?period=30d&tag=autumn").text
    assert (card(autumn, "messages"), card(autumn, "unique-clicks"), card(autumn, "unique-opens")) == ("2", "1", "1")
    assert URLS[1] in autumn and URLS[0] not in autumn
    start = (NOW - timedelta(days=21)).date().isoformat()
    end = (NOW - timedelta(days=18)).date().isoformat()
    custom = client.get(f"/stats?period=custom&from={start}&to={end}").text
    assert (card(custom, "messages"), card(custom, "total-clicks")) == ("2", "1")
    tag_page = client.get("/stats/tag?period=30d&tag=winter").text
    assert 'id="tag-name">winter<' in tag_page
    assert card(tag_page, "messages") == "3" and "reader2@example.com" in tag_page and "autumn" not in tag_page


def submitted(page: str, pick: dict[str, str] | None = None) -> dict[str, str]:
    """What a browser sends for the period form: its inputs, and each select's option (``pick``: by shown text)."""
    form = next(f for f in html5lib.parse(page, namespaceHTMLElements=False).iter("form")
                if f.get("id") == "period-form")
    sent = {i.get("name", ""): i.get("value", "") for i in form.iter("input")}
    shown = lambda option: " ".join("".join(option.itertext()).split())  # noqa: E731 - as a browser shows it
    for select in form.iter("select"):
        name, options = select.get("name", ""), list(select.iter("option"))
        if pick and name in pick:
            chosen = next(o for o in options if shown(o) == pick[name])
        else:
            chosen = next((o for o in options if o.get("selected") is not None), options[0])
        sent[name] = chosen.get("value", shown(chosen))  # an option without a value sends its text, collapsed
    return sent


def test_the_tag_picker_sends_the_tag_exactly_and_keeps_it_across_periods(client: FlaskClient,
                                                                          parts: Clicktrail) -> None:
    send(parts.store, 2, "spring  sale ", at=NOW - timedelta(days=20))
    send(parts.store, 1, "winter", at=NOW - timedelta(hours=2))
    login(client)
    form = submitted(client.get("/stats?period=30d").text, pick={"tag": "spring sale"})
    assert form["tag"] == "spring  sale "
    page = client.get("/stats", query_string=form).text
    assert card(page, "messages") == "2"
    form = submitted(page)
    assert form == {**form, "tag": "spring  sale ", "period": "30d"}  # the chosen tag is selected
    day = client.get("/stats", query_string={**form, "period": "24h"}).text  # a period without that tag
    assert submitted(day)["tag"] == "spring  sale " and card(day, "messages") == "0"
    assert submitted(client.get("/stats?period=30d").text)["tag"] == ""  # all tags


def test_untagged_messages_have_their_own_tag_page(client: FlaskClient, parts: Clicktrail) -> None:
    send(parts.store, 2, None)
    send(parts.store, 1, "winter")
    login(client)
    assert card(client.get("/stats/tag?tag=").text, "messages") == "2"
    assert "(no tag)" in client.get("/stats").text


@pytest.mark.parametrize("query, says", [
    ("period=forever", "not one of 24h, 7d, 30d, custom"),
    ("period=custom&from=2026-13-01&to=2026-12-01", "is not a date"),
    ("period=custom&from=2026-12-05&to=2026-12-01", "ends before it starts"),
    ("period=custom&from=2000-01-01&to=2026-12-01", "too long"),
])
def test_a_bad_period_gets_a_clear_400(client: FlaskClient, query: str, says: str) -> None:
    login(client)
    resp = client.get(f"/stats?{query}")
    assert resp.status_code == 400 and says in resp.text


def test_message_page_lists_each_open_and_click(client: FlaskClient, parts: Clicktrail) -> None:
    (aid,) = send(parts.store, subject="Our <b>winter</b> sale")
    view(parts.store, aid, at=NOW - timedelta(minutes=5), ua="Thunderbird/128")
    click(parts.store, aid, 3, ua="Firefox/140")
    login(client)
    page = client.get(f"/stats/message/{attempt_key(aid)}").text
    assert 'id="recipient">reader0@example.com<' in page
    assert 'id="subject">Our &lt;b&gt;winter&lt;/b&gt; sale<' in page
    events = page.split('id="events"')[1]
    assert events.index("Thunderbird/128") < events.index("Firefox/140")
    assert URLS[2] in events and "192.0.2.7" in events and "192.0.2.8" in events
    assert (card(page, "total-opens"), card(page, "total-clicks")) == ("1", "1")


@pytest.mark.parametrize("key", ["0123456789abcdef", "nothex", "ffffffffffffffff"])
def test_an_unknown_message_is_a_404(client: FlaskClient, key: str) -> None:
    login(client)
    assert client.get(f"/stats/message/{key}").status_code == 404


def test_what_senders_and_readers_wrote_is_shown_as_text(client: FlaskClient, parts: Clicktrail) -> None:
    evil = "https://x.example/<script>alert(1)</script>?a=\"'><img src=x onerror=alert(2)>"
    (aid,) = send(parts.store, tag="<script>tag()</script>", subject="<script>subject()</script>",
                  recipient="<script>rcpt()</script>{}")
    click(parts.store, aid, 1, url=evil, ua="<script>ua()</script>")
    aggregate.fold(parts.store)
    login(client)
    pages = [client.get("/stats").text, client.get(f"/stats/message/{attempt_key(aid)}").text,
             client.get("/stats/tag", query_string={"tag": "<script>tag()</script>"}).text]
    for page in pages:
        assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0] and "&lt;script&gt;ua()&lt;/script&gt;" in pages[1]
    assert "&lt;script&gt;tag()&lt;/script&gt;" in pages[2]
    assert not re.search(r'href="https?://x\.example', "".join(pages))
    assert "script-src" not in client.get("/stats").headers["Content-Security-Policy"]  # default-src 'none'


def test_times_show_in_the_timezone_the_user_picks(client: FlaskClient, parts: Clicktrail) -> None:
    at = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    (aid,) = send(parts.store, at=at)
    login(client)
    page = f"/stats/message/{attempt_key(aid)}"
    assert "2026-06-01 12:30:00 UTC" in client.get(page).text
    resp = client.post("/stats/timezone", data={"csrf": csrf(client), "tz": "Asia/Kolkata", "next": page})
    assert resp.status_code == 302 and resp.headers["Location"] == page
    assert "2026-06-01 18:00:00 IST" in client.get(page).text
    assert client.post("/stats/timezone", data={"csrf": csrf(client), "tz": "Mars/Olympus"}).status_code == 400
    assert client.post("/stats/timezone", data={"tz": "UTC"}).status_code == 400  # no CSRF token


def test_the_configured_timezone_is_the_default(settings: dict[str, Any]) -> None:
    app = create_app({**settings, "timezone": "America/New_York"})
    parts: Clicktrail = app.extensions["clicktrail"]
    (aid,) = send(parts.store, at=datetime(2026, 1, 15, 17, 0, tzinfo=UTC))
    client = app.test_client()
    login(client)
    assert "2026-01-15 12:00:00 EST" in client.get(f"/stats/message/{attempt_key(aid)}").text


def test_a_bad_timezone_setting_stops_start_up(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="timezone"):
        create_app({**settings, "timezone": "Nowhere/Special"})


def test_daily_buckets_follow_the_users_timezone(client: FlaskClient, parts: Clicktrail) -> None:
    (aid,) = send(parts.store, at=datetime(2026, 3, 1, tzinfo=UTC))
    click(parts.store, aid, 1, at=datetime(2026, 3, 2, 23, 30, tzinfo=UTC))  # 3 March in Tokyo
    aggregate.fold(parts.store)
    login(client)
    client.post("/stats/timezone", data={"csrf": csrf(client), "tz": "Asia/Tokyo"})
    page = client.get("/stats?period=custom&from=2026-03-01&to=2026-03-04").text
    assert re.search(r'class="clicks"[^>]*data-value="1"><title>Tue 03 Mar: 1 clicks', page)


# -- the step on a timer, and on the command line -----------------------------------------------------------------


def test_the_app_folds_events_on_a_timer(settings: dict[str, Any]) -> None:
    app = create_app({**settings, "aggregate_interval": 1})
    parts: Clicktrail = app.extensions["clicktrail"]
    (aid,) = send(parts.store)
    click(parts.store, aid, 1)
    app.test_client().get("/login")  # the first request starts this worker's timer
    deadline = time.monotonic() + 30
    while aggregate.pending(parts.store) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aggregate.pending(parts.store) == 0
    assert _all_time(parts)["total_clicks"] == 1


def test_cli_aggregate_and_rebuild(env: dict[str, str], parts: Clicktrail) -> None:
    random_traffic(parts.store, 8, events=120)
    result = CliRunner().invoke(main, ["aggregate"])
    assert result.exit_code == 0, result.output
    assert "folded 120 events" in result.output
    assert CliRunner().invoke(main, ["aggregate"]).output.startswith("folded 0 events")
    result = CliRunner().invoke(main, ["aggregate", "--rebuild"])
    assert result.exit_code == 0 and "folded 120 events" in result.output
    assert _all_time(parts) == parts.store.stats()


def test_cli_hash_password(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["hash-password"], input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    assert check_password_hash(result.output.strip().splitlines()[-1], "correct horse")
    short = CliRunner().invoke(main, ["hash-password", "--password", "short"])
    assert short.exit_code != 0 and "too short" in short.output


def test_messages_sent_are_folded_by_hour_once_an_hour_old_and_counted_live_before(parts: Clicktrail) -> None:
    send(parts.store, 3, "winter", at=NOW - timedelta(hours=5))
    send(parts.store, 2, "winter", at=NOW - timedelta(minutes=5))
    aggregate.fold(parts.store)
    assert parts.store.query("SELECT SUM(messages) FROM agg_sent")[0][0] == 3
    day = periods.choose({"period": "24h"}, periods.zone("UTC"))
    assert summary.sent(parts.store, day) == {"winter": 5}
    later = NOW + timedelta(hours=3)
    aggregate.fold_sent(parts.store, now=later)
    assert parts.store.query("SELECT SUM(messages) FROM agg_sent")[0][0] == 5
    assert summary.sent(parts.store, day) == {"winter": 5}


def test_serve_refuses_to_start_when_the_dashboard_is_on_without_a_password(
        env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLICKTRAIL_STATS_PASSWORD")
    monkeypatch.setenv("CLICKTRAIL_DASHBOARD", "on")
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "CLICKTRAIL_DASHBOARD is on but neither CLICKTRAIL_STATS_PASSWORD" in result.output


@pytest.mark.parametrize("name, value, says", [
    ("dashboard", "maybe", "expected auto, on or off"),
    ("stats_users", "ann", "name:hash"),
    ("aggregate_interval", "-1", "must not be negative"),
])
def test_bad_dashboard_settings_stop_start_up(settings: dict[str, Any], name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        create_app({**settings, name: value})


@pytest.mark.parametrize("name", ["24h", "7d"])
def test_period_figures_match_a_direct_count_of_the_raw_events(parts: Clicktrail, name: str) -> None:
    random_traffic(parts.store, 9, events=600)
    aggregate.fold(parts.store)
    period = periods.choose({"period": name}, periods.zone("UTC"))
    lo, hi = periods.stamp(period.start), periods.stamp(period.end)
    first: dict[tuple[str, str], str] = {}
    pixel_copies, opens, clicks = set(), 0, 0
    for type_ in ("open", "click"):
        for e in parts.store.events(type_):
            m = e["message"]
            keys = [(type_, m)] + [("open", m)] * (type_ == "click")  # a click is an open too
            keys += [("implied", m)] * (type_ == "click" or e["kind"] == "image")  # an open without the pixel
            for key in keys:
                first[key] = min(first.get(key, e["time"]), e["time"])
            if e["kind"] == "pixel":
                pixel_copies.add(e["message"])
                opens += lo <= e["time"] < hi
            clicks += type_ == "click" and lo <= e["time"] < hi
    opens += sum(1 for (k, m), t in first.items() if k == "implied" and m not in pixel_copies and lo <= t < hi)
    unique = lambda kind: sum(1 for (k, _), t in first.items() if k == kind and lo <= t < hi)  # noqa: E731
    shown = summary.overview(parts.store, period)
    assert (shown["total_opens"], shown["unique_opens"], shown["total_clicks"], shown["unique_clicks"]) == (
        opens, unique("open"), clicks, unique("click"))
    assert shown["messages"] == sum(1 for a in parts.store.attempts() if lo <= periods.stamp(
        datetime.fromisoformat(a["time"])) < hi)


def test_a_click_is_an_open_so_click_to_open_never_passes_100_percent(client: FlaskClient, parts: Clicktrail) -> None:
    ids = send(parts.store, 4)
    click(parts.store, ids[0], 1)  # images blocked: clicked, never opened
    click(parts.store, ids[0], 2)
    click(parts.store, ids[1], 1, at=NOW - timedelta(minutes=30))
    view(parts.store, ids[1])  # its pixel, after the click: still one open
    view(parts.store, ids[2], "image")
    click(parts.store, ids[2], 1)
    aggregate.fold(parts.store)
    login(client)
    page = client.get("/stats?period=24h").text
    shown = {k: card(page, k) for k in ("unique-opens", "total-opens", "unique-clicks", "open-rate",
                                        "click-to-open-rate")}
    assert shown == {"unique-opens": "3", "total-opens": "3", "unique-clicks": "3", "open-rate": "75.0%",
                     "click-to-open-rate": "100.0%"}
    assert parts.store.stats()["unique_opens"] == 3 and parts.store.stats()["total_opens"] == 3
