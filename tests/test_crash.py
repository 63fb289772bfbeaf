"""SIGKILL a worker, then the whole server, in the middle of a load run: nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from reliability import Outcome, children, hammer, integrity, logged, seed
from servers import gunicorn

from clicktrail.tracker import Clicktrail, create_app

pytestmark = pytest.mark.slow

KILL_WORKER_AT = 300
KILL_SERVER_AT = 800


def test_every_acknowledged_click_survives_sigkill(parts: Clicktrail, env: dict[str, str],
                                                   settings: dict[str, Any]) -> None:
    copy = seed(parts.store, parts.signer, [f"https://example.com/p/{i}" for i in range(1, 4)])
    jobs = [(copy.path(1 + n % 3), f"crash-{n}") for n in range(5000)]
    stop = threading.Event()
    done = 0
    lock = threading.Lock()
    killed: list[str] = []

    with gunicorn(env, workers=4) as (base, server):
        def on_done(_: Outcome) -> None:
            nonlocal done
            with lock:
                done += 1
                if done == KILL_WORKER_AT:
                    os.kill(children(server.pid)[0], signal.SIGKILL)
                    killed.append("worker")
                elif done == KILL_SERVER_AT:
                    os.killpg(server.pid, signal.SIGKILL)  # master and every worker, no clean-up
                    killed.append("server")
                    stop.set()

        results = hammer(base, jobs, threads=12, stop=stop, on_done=on_done)
        server.wait(10)

    assert killed == ["worker", "server"]
    db = env["CLICKTRAIL_DATABASE"]
    assert integrity(db) == "ok"
    acknowledged = {r.marker for r in results if r.status == 302}
    assert len(acknowledged) >= KILL_SERVER_AT // 2  # the run was really under way
    assert {r.status for r in results} <= {302, None}  # a dying worker drops connections, never errs
    clicks = logged(db)
    in_log = [agent for _, agent, _, _ in clicks]
    assert acknowledged <= set(in_log)  # every click that got its 302 is in the log
    assert len(in_log) == len(set(in_log))  # and none twice
    # The database opens and takes writes again, as a restarted server would.
    store = create_app(settings).extensions["clicktrail"].store
    assert store.stats()["total_clicks"] == len(in_log)
