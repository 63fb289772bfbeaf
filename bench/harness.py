"""What every benchmark needs: a seeded database, gunicorn on 127.0.0.1, wrk, and peak RSS.

Run the scripts from the repository root with the project's virtualenv, e.g.
``.venv/bin/python bench/redirect.py``; each prints its figures and the ratios
measured side by side in the same run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from clicktrail.logstore import Attempt, new_id  # noqa: E402
from clicktrail.tracker import create_app  # noqa: E402

TRACKER = "clicktrail.tracker:create_app()"
BARE = "bare:create_app()"  # bench/bare.py: the same routes answering fixed responses


@dataclass
class Seeded:
    env: dict[str, str]
    database: str
    click: str  # request path of a tracked link
    pixel: str  # request path of the open pixel
    url: str  # where the click redirects


def seed(folder: str, sync: bool = True, url: str = "https://shop.example.com/sale?id=7#top") -> Seeded:
    """A fresh database in ``folder`` holding one message copy with one link."""
    env = {
        "CLICKTRAIL_DATABASE": os.path.join(folder, "bench.db"),
        "CLICKTRAIL_SECRET_KEY": "bench-secret-key",
        "CLICKTRAIL_CLICK_DOMAIN": "http://127.0.0.1:8000",
        "CLICKTRAIL_SYNC": "yes" if sync else "no",
    }
    parts = create_app({k[len("CLICKTRAIL_"):].lower(): v for k, v in env.items()}).extensions["clicktrail"]
    aid = new_id()
    parts.store.record_message([("click", url)], [Attempt(aid, "reader@example.com", "Bench", None, "bench")])
    parts.store.close()
    return Seeded(env, env["CLICKTRAIL_DATABASE"], f"/{parts.signer.mint(aid, 1)}/sale?id=7",
                  f"/{parts.signer.mint(aid, 0)}/o.gif", url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(app: str, env: Mapping[str, str], workers: int = 4) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """gunicorn (sync workers, no access log) serving ``app`` on a free loopback port."""
    port = free_port()
    exe = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [exe, "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--pythonpath", str(BENCH),
         "--no-control-socket", "--log-level", "warning", app],
        # The tracker answers only on its own hosts: this one is where wrk will knock.
        env={**os.environ, "CLICKTRAIL_DASHBOARD_HOST": f"127.0.0.1:{port}", **env}, start_new_session=True, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=2)
            except urllib.error.HTTPError:
                break  # answered (404): up
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            else:
                break
        time.sleep(1)  # every worker booted
        yield base, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors of any kind
    bad_status: int  # non-2xx/3xx answers
    output: str


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(url: str, seconds: int = 10, connections: int = 16, threads: int = 2, script: str | None = None,
        extra: tuple[str, ...] = ()) -> WrkResult:
    """Run wrk against ``url`` and read its summary (with --latency percentiles)."""
    exe = shutil.which("wrk")
    if not exe:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    cmd = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, *extra, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, requests, p50, p99, errors, int(bad.group(1)) if bad else 0, out)


def paced_script(folder: str, rate: float, connections: int, headers: str = "") -> str:
    """A wrk script holding the total rate near ``rate`` req/s: each connection waits between requests.

    wrk (unlike wrk2) has no constant-rate mode; ``delay()`` per request over
    ``connections`` connections gives the same load, so latency is measured
    at that rate instead of at saturation.
    """
    path = os.path.join(folder, f"paced-{int(rate)}.lua")
    with open(path, "w") as f:
        f.write(f"{headers}\nfunction delay()\n  return {1000.0 * connections / rate:.3f}\nend\n")
    return path


def unique_agent_script(folder: str) -> str:
    """A wrk script giving every request its own User-Agent (thread id, then a counter)."""
    path = os.path.join(folder, "unique.lua")
    with open(path, "w") as f:
        f.write("""
local counter = 1
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  return wrk.format("GET", nil, {["User-Agent"] = "t" .. id .. "-" .. counter})
end
""")
    return path


def count(database: str, type_: str = "click") -> int:
    """Events of a type in the database, once every journal has been caught up on."""
    import sqlite3

    from clicktrail.logstore import Store

    Store(database, database + ".spool").replay()

    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events WHERE type = ?", (type_,)).fetchone()[0])
    finally:
        conn.close()


def peak_rss_kb(pid: int) -> int:
    """The peak resident set size of a live process (VmHWM), in KB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def workers_of(pid: int) -> list[int]:
    """gunicorn's worker processes: the children of its master."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


@contextmanager
def scratch() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="clicktrail-bench-") as folder:
        yield folder
