"""Headless Chromium driven over the DevTools protocol on a pipe (no extra packages, no port).

One browser serves many pages, so a test that screenshots dozens of pages starts Chromium once.
Network is off: every host name fails to resolve and any proxy use goes to a closed port.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--force-device-scale-factor=1", "--font-render-hinting=none",
    '--host-resolver-rules=MAP * ~NOTFOUND', "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
)
TIMEOUT = 60.0  # per protocol answer; only stops a hung browser, never a measured result


class BrowserError(Exception):
    pass


@dataclass
class Shot:
    png: bytes
    size: tuple[int, int]  # CSS pixels, the page's whole length
    requested: list[str]  # http(s) URLs the page asked for
    answered: list[str]  # http(s) URLs that got an answer (none, with the network off)


class Chromium:
    """A browser process and one page in it."""

    def __init__(self, exe: str, profile: str) -> None:
        to_child, self._out = os.pipe()  # we write commands, Chromium reads them on fd 3
        self._in, from_child = os.pipe()  # Chromium writes answers on fd 4

        def fds() -> None:
            a, b = os.dup(to_child), os.dup(from_child)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, pass_fds=(3, 4), start_new_session=True,
        )
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Network.enable"):
            self.call(domain, session=True)
        self.call("Emulation.setScriptExecutionDisabled", session=True, value=True)  # mail runs no scripts

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._in], [], [], max(left, 0))
            if not ready:
                raise BrowserError("Chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError("Chromium closed the pipe")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, keeping the events that come before it."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer.get("result", {})  # type: ignore[no-any-return]
            self.events.append(answer)

    def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read())

    def screenshot(self, url: str, width: int) -> Shot:
        """Load a page at this window width: a PNG of its whole length, its CSS size, what it fetched."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=200,
                  deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        w, h = int(size["width"]), int(size["height"])
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        requested, answered = [], []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Network.requestWillBeSent":
                requested.append(params["request"]["url"])
            elif event.get("method") == "Network.responseReceived":
                answered.append(params["response"]["url"])
        web = lambda urls: [u for u in urls if u.startswith(("http:", "https:"))]  # noqa: E731
        return Shot(base64.b64decode(shot["data"]), (w, h), web(requested), web(answered))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


@contextmanager
def chromium(exe: str) -> Iterator[Chromium]:
    """Start Chromium with a fresh profile; stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="clicktrail-chromium-") as profile:
        browser = Chromium(exe, profile)
        try:
            yield browser
        finally:
            browser.close()
