"""The dashboard in a real browser: gunicorn on 127.0.0.1, headless Chromium driven by chromedriver."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import need
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from servers import free_port, gunicorn

from clicktrail.messages import track
from clicktrail.tracker import Clicktrail
from clicktrail.urls import Target, tracked_url

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MESSAGE = b"""From: Shop <news@shop.example.com>
To: ann@example.com
Subject: Winter sale <soon>
Message-ID: <winter-1@shop.example.com>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Hello!</p>
<p><a href="https://shop.example.com/sale?id=7">See the sale</a></p>
<p><a href="https://shop.example.com/">Our shop</a></p>
<img src="https://shop.example.com/logo.png" alt="logo">
</body></html>
"""
EVIL_AGENT = "<script>window.pwned = 1</script> EvilAgent/1.0"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile, driven through chromedriver."""
    chromium, chromedriver = need("chromium"), need("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="clicktrail-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1400", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver, port=free_port()))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def arrive(browser: Any, url: str) -> None:
    """Wait for the navigation a click started to land on ``url``."""
    WebDriverWait(browser, 30).until(lambda d: d.current_url == url and d.execute_script(
        "return document.readyState") == "complete")


def _clicks_and_opens(base: str, parts: Clicktrail) -> str:
    """Send the message to two readers; ann opens it, clicks the sale twice and the shop once."""
    result = track(parts.store, parts.signer, parts.options, MESSAGE, ["ann@example.com", "bob@example.com"],
                   "winter")
    ann = int(result.copies[0].message, 16)
    links = result.prepared.links.links
    url = lambda idx: tracked_url(base, parts.signer.mint(ann, idx), Target(links[idx - 1][1]))  # noqa: E731
    sale = next(i for i, (_, u) in enumerate(links, 1) if u.endswith("id=7"))
    shop = next(i for i, (_, u) in enumerate(links, 1) if u == "https://shop.example.com/")
    get = lambda u, ua: requests.get(u, headers={"User-Agent": ua}, allow_redirects=False, timeout=10)  # noqa: E731
    assert get(f"{base}/{parts.signer.mint(ann, 0)}/o.gif", "Thunderbird/128.0").status_code == 200
    for idx, ua in ((sale, "Firefox/140.0"), (sale, EVIL_AGENT), (shop, "Firefox/140.0")):
        assert get(url(idx), ua).status_code == 302
    return result.copies[0].message


@pytest.mark.slow
def test_overview_and_message_page_in_chromium(browser: Any, env: dict[str, str], parts: Clicktrail) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    server_env = {**env, "CLICKTRAIL_CLICK_DOMAIN": f"http://127.0.0.1:{port}", "CLICKTRAIL_SYNC": "no",
                  "CLICKTRAIL_TIMEZONE": "Europe/Berlin"}
    with gunicorn(server_env, workers=2, port=port) as (base, _proc):
        message = _clicks_and_opens(base, parts)
        folded = subprocess.run([str(Path(sys.executable).with_name("clicktrail")), "aggregate"],
                                env={**os.environ, **server_env}, capture_output=True, text=True, timeout=60)
        assert folded.returncode == 0, folded.stderr
        assert "folded 4 events" in folded.stdout

        browser.get(f"{base}/stats?period=24h")
        assert "/login" in browser.current_url
        browser.find_element(By.ID, "password").send_keys(env["CLICKTRAIL_STATS_PASSWORD"])
        browser.find_element(By.ID, "login").click()
        arrive(browser, f"{base}/stats?period=24h")
        text = lambda i: browser.find_element(By.CSS_SELECTOR, f"#{i} b").text  # noqa: E731
        assert {i: text(i) for i in ("messages", "unique-opens", "total-opens", "unique-clicks", "total-clicks",
                                     "open-rate", "click-rate", "click-to-open-rate")} == {
            "messages": "2", "unique-opens": "1", "total-opens": "1", "unique-clicks": "1", "total-clicks": "3",
            "open-rate": "50.0%", "click-rate": "50.0%", "click-to-open-rate": "100.0%"}
        chart = browser.find_element(By.CSS_SELECTOR, "svg#chart")
        assert chart.size["width"] > 300 and chart.size["height"] > 80
        bars = lambda what: sum(int(r.get_attribute("data-value"))  # noqa: E731
                                for r in chart.find_elements(By.CSS_SELECTOR, f"rect.{what}"))
        assert (bars("opens"), bars("clicks")) == (1, 3)
        rows = browser.find_elements(By.CSS_SELECTOR, "#best-links tr")[1:]
        assert [r.text for r in rows] == ["https://shop.example.com/sale?id=7 1 2 100%",
                                          "https://shop.example.com/ 1 1 100%"]
        assert browser.find_elements(By.CSS_SELECTOR, "#best-links a") == []  # URLs are text, never links
        browser.save_screenshot(str(ARTIFACTS / "dashboard-overview.png"))

        browser.find_element(By.CSS_SELECTOR, f"a[href='/stats/message/{message}']").click()
        arrive(browser, f"{base}/stats/message/{message}")
        assert browser.find_element(By.ID, "recipient").text == "ann@example.com"
        assert browser.find_element(By.ID, "subject").text == "Winter sale <soon>"
        events = browser.find_elements(By.CSS_SELECTOR, "#events tr")[1:]
        assert len(events) == 4
        assert any(EVIL_AGENT in e.text for e in events)  # shown as text ...
        assert browser.execute_script("return window.pwned === undefined")  # ... and never run
        assert all(("CET" in e.text or "CEST" in e.text) and "127.0.0.1" in e.text for e in events)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-message.png"))

        browser.find_element(By.CSS_SELECTOR, "#logout-form button").click()
        arrive(browser, f"{base}/login")
        browser.get(f"{base}/stats")
        assert "/login" in browser.current_url
