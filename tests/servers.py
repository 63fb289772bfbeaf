"""Real servers for tests: gunicorn on 127.0.0.1 with a free port, stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1, allow_redirects=False)
            return
        except (requests.ConnectionError, requests.Timeout):  # a busy machine boots workers slowly
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s")


@contextmanager
def gunicorn(env: Mapping[str, str], workers: int = 2, port: int | None = None,
             extra: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``clicktrail.tracker:create_app()`` under gunicorn; yield (base URL, process)."""
    port = port or free_port()
    exe = str(Path(sys.executable).with_name("gunicorn"))
    log = open(os.devnull, "wb")
    proc = subprocess.Popen(
        [exe, "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
         "--no-control-socket", *extra, "clicktrail.tracker:create_app()"],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/")
        yield base, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
