"""The README's API examples, run for real with curl against the demo served by gunicorn on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import need
from servers import free_port, gunicorn, mail_sink

ROOT = Path(__file__).resolve().parent.parent


def api_examples() -> list[str]:
    """The shell commands of the ```sh block in the README's API section, one string each."""
    section = (ROOT / "README.md").read_text().split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    commands, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        try:
            shlex.split(pending)  # a quote still open: the command goes on
        except ValueError:
            continue
        if not pending.rstrip().endswith("\\"):
            commands.append(pending.strip())
            pending = ""
    assert not pending, pending
    return commands


def lines(body: str) -> list[Any]:
    return [json.loads(line) for line in body.splitlines()]


def sent_to(*who: str) -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert [c["recipient"] for c in body["messages"]] == list(who)
        for c in body["messages"]:
            assert set(c) >= {"message", "recipient", "mime", "encoding"} and c["encoding"] == "utf-8"
        assert {"links", "track_clicks", "track_opens"} <= set(body)
    return check


# What each example answers, in the README's order: (text it holds, "$": at its end; status; check of the answer).
EXPECTED: list[tuple[str, int, Callable[[Any], None]]] = [
    ('"tag": "sale"}', 200, sent_to("ann@example.com", "bob@example.com")),
    ("-F trackopens=no", 200, lambda b: (sent_to("ann@example.com")(b), b["track_opens"] is False or pytest.fail())),
    ('"send": true', 200, lambda b: (sent_to("ann@example.com")(b), b["delivered"] == 1 or pytest.fail(),
                                     b["messages"][0]["delivery"]["ok"] or pytest.fail())),
    ('"api_key": "demo"}', 201, lambda b: b | {"added": None} == {
        "kind": "api_key", "value": "demo", "domain": "https://offers.example.com", "host": "offers.example.com",
        "added": None} or pytest.fail(str(b))),
    ('/api/domains -H "Authorization: Bearer $KEY"$', 200,
     lambda b: [d["value"] for d in b["domains"]] == ["demo"] or pytest.fail(str(b))),
    ("-X DELETE", 200, lambda b: b == {"removed": 1} or pytest.fail(str(b))),
    ("logs/clicks?tag=demo", 200,
     lambda b: (lines(b) and {r["tag"] for r in lines(b)} == {"demo"}) or pytest.fail(b)),
    ("logs/attempts?format=csv", 200,
     lambda b: len(list(csv.DictReader(io.StringIO(b)))) == 5 or pytest.fail(b)),  # the demo's, and the four above
    ("stats?tag=sale", 200, lambda b: (b["totals"]["messages"], [t["tag"] for t in b["tags"]]) == (2, ["sale"])
     or pytest.fail(str(b))),
    ("stats?start=", 200, lambda b: (b["totals"]["messages"], b["totals"]["unique_clicks"], len(b["messages"]))
     == (5, 1, 5) and {t["tag"] for t in b["tags"]} == {"demo", "sale", ""} or pytest.fail(str(b))),
]


@pytest.mark.slow
def test_the_readme_api_examples_answer_as_documented(env: dict[str, str], tmp_path: Path) -> None:
    need("curl")
    examples = api_examples()
    assert examples[0].startswith("KEY=$(") and len(examples) == len(EXPECTED) + 1, examples
    port, data = free_port(), tmp_path / "demo-data"
    exe = str(Path(sys.executable).with_name("clicktrail"))
    # The demo's own set-up (python3 dev.py demo without the server), then its server: gunicorn, as the demo runs it.
    demo = subprocess.run([exe, "demo", "--no-serve", "--port", str(port), "--data", str(data)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert demo.returncode == 0, demo.stderr
    link = re.search(r"\[click\] (\S+)", demo.stdout).group(1)  # type: ignore[union-attr]
    served = {**env, "CLICKTRAIL_CLICK_DOMAIN": f"http://127.0.0.1:{port}",
              "CLICKTRAIL_DATABASE": str(data / "clicktrail.db"), "CLICKTRAIL_SYNC": "no",
              "CLICKTRAIL_STATS_PASSWORD": (data / "stats-password").read_text().strip()}
    local = lambda cmd: (cmd.replace("127.0.0.1:8000", f"127.0.0.1:{port}")  # noqa: E731
                         .replace("demo-data/", f"{data}/").replace(".venv/bin/clicktrail", exe))
    with mail_sink() as sink, gunicorn({**served, "CLICKTRAIL_SMTP_UPSTREAM": f"127.0.0.1:{sink.port}"}, port=port):
        assert requests.get(link, allow_redirects=False, timeout=10).status_code == 302  # a reader follows a link
        shell = {**os.environ, **served}
        key = subprocess.run(["bash", "-c", local(examples[0]) + '\nprintf %s "$KEY"'], cwd=ROOT, env=shell,
                             capture_output=True, text=True, timeout=60)
        assert key.returncode == 0 and key.stdout.startswith("ct_"), key.stderr
        for command, (mark, status, check) in zip(examples[1:], EXPECTED, strict=True):
            assert re.search(re.escape(mark.rstrip("$")) + ("$" if mark.endswith("$") else ""), command), command
            done = subprocess.run(["bash", "-c", local(command) + " -w '\\n%{http_code}'"], cwd=ROOT,
                                  env={**shell, "KEY": key.stdout}, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (command, done.stderr)
            body, _, code = done.stdout.rpartition("\n")
            assert int(code) == status, (command, code, body[:500])
            check(body if "logs/" in command else json.loads(body))
        assert len(sink.received) == 1
