"""Bad input to every entry point: a clear error or an unchanged pass-through, never a traceback.

Each entry point is a table of cases run the same way: ``CLI_CASES`` runs
the real ``clicktrail`` command as a subprocess; the API sweep sends every
``/api`` route (found in the app's URL map, so new ones are included) the
same kinds of bad bodies and query strings through the Flask test client,
with a valid key, and wants a JSON error or success, never a 5xx.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability import seed

from clicktrail.tracker import Clicktrail

CRLF = b"\r\n"
HTML = b'<html><body><a href="https://example.com/a">A</a></body></html>'


def mime(headers: bytes, body: bytes) -> bytes:
    return b"From: a@example.com\r\nTo: r@example.com\r\nSubject: s\r\n" + headers + CRLF + body


MULTIPART = mime(b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="BB"\r\n',
                 b"--BB\r\nContent-Type: text/plain\r\n\r\nhttps://example.com/t\r\n"
                 b"--BB\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + HTML + b"\r\n--BB--\r\n")


def big_mime() -> bytes:
    """50 MB: a short HTML part and a large base64 attachment, as real mail is."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    attachment = line * (50 * 1024 * 1024 // len(line))
    return mime(b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="M"\r\n',
                b"--M\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + HTML + b"\r\n--M\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                b"Content-Disposition: attachment; filename=big.bin\r\n\r\n" + attachment + b"--M--\r\n")


@dataclass
class Case:
    args: tuple[str, ...]
    stdin: bytes | Callable[[], bytes] = b""
    # "error": exit 1 with an error naming the problem; "unchanged": exit 0, stdout == stdin;
    # "rewritten": exit 0 and output differs; "ok": exit 0, anything sane.
    expect: str = "ok"
    says: str = ""  # a word the error or warning must contain


def nested_rfc822(levels: int = 1000) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" * levels + b"Subject: x\r\n\r\n" + HTML


def nested_multipart(levels: int = 2000) -> bytes:
    head = b"".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(levels))
    tail = b"".join(f"\r\n--b{i}--".encode() for i in reversed(range(levels)))
    return b"From: a@example.com\r\n" + head + b"Content-Type: text/html\r\n\r\n" + HTML + tail


NESTED_FROM = mime(b"From: " + b"(" * 50_000 + b"a@example.com\r\nContent-Type: text/html\r\n", HTML)

CLI_CASES: dict[str, Case] = {
    "1000 nested message/rfc822": Case(("rewrite",), nested_rfc822, "unchanged", "nested"),
    "2000 nested multipart/mixed": Case(("rewrite",), nested_multipart, "unchanged", "nested"),
    "comments nested 50,000 deep in From": Case(("rewrite",), NESTED_FROM, "rewritten"),
    "empty": Case(("rewrite",), b"", "error", "empty"),
    "only whitespace": Case(("rewrite",), b" \r\n\t\r\n", "error", "empty"),
    "truncated headers": Case(("rewrite",), b"From: a@example.com\r\nSubject: hal", "unchanged"),
    "truncated multipart": Case(("rewrite",), MULTIPART[: MULTIPART.index(b"--BB--") + 3], "unchanged", "boundary"),
    "multipart cut in a part": Case(("rewrite",), MULTIPART[: len(MULTIPART) - 40], "unchanged", "unchanged"),
    "no blank line after headers": Case(
        ("rewrite",), b"From: a@example.com\r\nContent-Type: text/html\r\n<a href='https://example.com/'>x</a>",
        "unchanged", "unchanged"),
    "unknown charset": Case(("rewrite",), mime(b"Content-Type: text/html; charset=x-no-such-charset\r\n", HTML),
                            "unchanged", "charset"),
    "latin-1 bytes declared utf-8": Case(
        ("rewrite",), mime(b"Content-Type: text/html; charset=utf-8\r\n", HTML.replace(b"A<", b"caf\xe9<")),
        "rewritten"),
    "utf-8 declared us-ascii": Case(
        ("rewrite",), mime(b"Content-Type: text/html; charset=us-ascii\r\n", HTML.replace(b"A<", "žluť<".encode())),
        "rewritten"),
    "utf-16 that is not": Case(("rewrite",), mime(b"Content-Type: text/html; charset=utf-16\r\n", HTML + b"x"),
                               "unchanged", "unchanged"),
    "broken base64": Case(("rewrite",), mime(b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n",
                                              b"PGEgaHJlZj0iaHR0cHM6Ly9leGFtcGxlLmNvbS8i!!!\r\n"), "unchanged", "base64"),
    "unknown transfer encoding": Case(
        ("rewrite",), mime(b"Content-Type: text/html\r\nContent-Transfer-Encoding: x-uuencode\r\n", HTML),
        "unchanged", "Transfer-Encoding"),
    "bad tracking switch": Case(("rewrite",), mime(b"X-Clicktrail-Trackclicks: maybe\r\n", HTML), "error",
                                "X-Clicktrail-Trackclicks"),
    "NUL bytes in HTML": Case(("rewrite",), HTML.replace(b"A<", b"\x00\x00<") + b"\x00", "unchanged"),  # binary: left as it was
    "binary": Case(("rewrite",), lambda: random.Random(3).randbytes(200_000), "ok"),
    "binary that starts like a header": Case(("rewrite",), lambda: b"X-A: b\r\n" + random.Random(4).randbytes(
        100_000), "ok"),
    "50 MB of binary": Case(("rewrite",), lambda: random.Random(5).randbytes(50 << 20), "unchanged", "limit"),
    "50 MB message": Case(("rewrite",), big_mime, "rewritten"),
    "a folder as FILE": Case(("rewrite", "/"), b"", "error", "/"),
    "a missing FILE": Case(("rewrite", "/no/such/file.eml"), b"", "error", "file.eml"),
    "logs: unknown kind": Case(("logs", "bounces"), b"", "error", "bounces"),
    "logs: bad --since": Case(("logs", "clicks", "--since", "yesterday\x01"), b"", "error", "--since"),
    "logs: empty --since": Case(("logs", "clicks", "--since", ""), b"", "ok"),
    "logs: overlong --since": Case(("logs", "opens", "--since", "2026-" + "1" * 100_000), b"", "error", "--since"),
}


def run_cli(args: tuple[str, ...], stdin: bytes, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    exe = str(Path(sys.executable).with_name("clicktrail"))
    return subprocess.run([exe, *args], input=stdin, env={**os.environ, **env}, capture_output=True, timeout=120)


def check(case: Case, r: subprocess.CompletedProcess[bytes], stdin: bytes) -> None:
    err = r.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    if case.expect == "error":
        assert r.returncode != 0 and "Error" in err, (r.returncode, err)
    else:
        assert r.returncode == 0, err
    if case.expect == "unchanged":
        assert r.stdout == stdin
    if case.expect == "rewritten":
        assert r.stdout != stdin and b"https://clicks.example.com/" in r.stdout
    assert case.says in err, err


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_bad_input(name: str, env: dict[str, str]) -> None:
    case = CLI_CASES[name]
    stdin = case.stdin() if callable(case.stdin) else case.stdin
    check(case, run_cli(case.args, stdin, env), stdin)


@pytest.mark.parametrize("database", ["not a database", "a folder", "missing folder"])
@pytest.mark.parametrize("command", [("logs", "clicks"), ("replay",), ("rewrite",)])
def test_cli_unusable_database_is_a_clear_error(tmp_path: Path, env: dict[str, str], database: str,
                                                command: tuple[str, ...]) -> None:
    path = {"not a database": tmp_path / "junk.db", "a folder": tmp_path, "missing folder": tmp_path / "no" / "x.db"}
    (tmp_path / "junk.db").write_bytes(b"this is not SQLite\n" * 100)
    r = run_cli(command, HTML, {**env, "CLICKTRAIL_DATABASE": str(path[database]),
                                "CLICKTRAIL_SPOOL": str(tmp_path / "spool")})
    err = r.stderr.decode()
    assert "Traceback" not in err and r.returncode == 1 and "database" in err, err


def test_cli_replay_skips_unreadable_spool_lines(parts: Clicktrail, env: dict[str, str]) -> None:
    spool = Path(env["CLICKTRAIL_DATABASE"] + ".spool")
    spool.write_bytes(b'[1, 2]\n{"type": "click"}\n\xff\xfe\x00garbage\n{"no": "such field"}\n')
    r = run_cli(("replay",), b"", env)
    assert "Traceback" not in r.stderr.decode() and r.returncode == 0
    assert b"replayed 0 spooled events" in r.stdout
    assert spool.read_bytes() == b""


def test_cli_logs_into_a_closed_pipe(parts: Clicktrail, env: dict[str, str]) -> None:
    """``clicktrail logs clicks | head -1``: the reader leaves early; no complaint."""
    from clicktrail.logstore import Event

    copy = seed(parts.store, parts.signer, ["https://example.com/"])
    parts.store.write([(parts.store._INSERT_EVENT, [parts.store._event_row(Event("click", copy.attempt_id, 1, "x"))
                                                     for _ in range(20_000)])])
    exe = str(Path(sys.executable).with_name("clicktrail"))
    r = subprocess.run(f"'{exe}' logs clicks | head -c 100 >/dev/null; echo \"${{PIPESTATUS[0]}}\"", shell=True,
                       executable="/bin/bash", env={**os.environ, **env}, capture_output=True, timeout=60)
    assert r.stderr == b"" and r.stdout.strip() == b"0", r.stderr.decode()


# -- the API: every /api route, authenticated, fed the same kinds of bad input ---------------------------------
def _api_bodies() -> dict[str, tuple[bytes, str]]:
    mime_text = MULTIPART.decode()
    return {
        "empty": (b"", "application/json"),
        "truncated JSON": (b'{"mime": "From: a@example.com\\r\\nSubj', "application/json"),
        "JSON in latin-1": ('{"mime": "Subject: caf\u00e9\\r\\n\\r\\nhi", "tag": "\u00e9t\u00e9"}'.encode("latin-1"),
                            "application/json"),
        "JSON of the wrong shape": (b'[1, {"mime": null}, "x"]', "application/json"),
        "deeply nested JSON": (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        "truncated MIME": (json.dumps({"mime": mime_text[: mime_text.index("--BB--") + 3]}).encode(), "application/json"),
        "unknown charset MIME": (json.dumps({"mime": mime(b"Content-Type: text/html; charset=x-nope\r\n",
                                                          HTML).decode()}).encode(), "application/json"),
        "NUL and CRLF in fields": (json.dumps({"mime": "\x00", "tag": "a\r\nb\x00", "recipients": ["\r\n"]}).encode(),
                                   "application/json"),
        "binary": (random.Random(6).randbytes(100_000), "application/octet-stream"),
        "binary said to be JSON": (random.Random(7).randbytes(100_000), "application/json"),
        "binary form": (random.Random(8).randbytes(100_000), "application/x-www-form-urlencoded"),
        "50 MB": (b'{"mime": "' + b"A" * (50 << 20) + b'"}', "application/json"),
        "deeply nested MIME": (json.dumps({"mime": nested_multipart().decode()}).encode(), "application/json"),
        "nested comments in addresses": (json.dumps({"html": "<p>x</p>", "from": "(" * 50_000 + "a@example.com",
                                                     "recipients": "(" * 50_000, "send": True}).encode(),
                                         "application/json"),
    }


API_QUERIES = {
    "bad times": "?start=yesterday&end=%ff%fe",
    "negative and huge numbers": "?limit=-1&after=99999999999999999999999999&message=zz",
    "NUL, CRLF and markup": "?tag=%00%0d%0a<script>&recipient=%0d%0aX:%20y",
    "overlong": "?tag=" + "A" * 60_000,
    "unknown parameter": "?nonsense=1&format=xml",
}


def test_api_bad_input_is_a_clear_json_error(app: Any, parts: Clicktrail) -> None:
    apikeys = pytest.importorskip("clicktrail.apikeys", reason="the API is not in this tree yet")
    _, key = apikeys.create(parts.store, "bad-input-sweep")
    from test_access import requests_for

    routes = [(method, path) for _, method, path in requests_for(app) if path.startswith("/api/")]
    assert routes, "no /api routes found"
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    seen = 0
    for method, path in routes:
        if method in ("POST", "PUT", "PATCH"):
            cases = [(name, path, body, ctype) for name, (body, ctype) in _api_bodies().items()]
        else:
            cases = [(name, path + query, b"", None) for name, query in API_QUERIES.items()]
        for name, url, body, ctype in cases:
            with client.open(url, method=method, data=body, content_type=ctype, headers=auth) as r:
                text = r.get_data(as_text=True)  # read it all: a streamed log answers while it is read
                answer = r.get_json(silent=True)
            seen += 1
            assert r.status_code < 500, (method, url[:80], name, r.status_code, text[:300])
            if r.status_code >= 400:
                assert isinstance(answer, dict) and answer.get("error"), (method, url[:80], name, text[:300])
    assert seen >= len(API_QUERIES)


@pytest.mark.parametrize("raw", [nested_rfc822(), nested_multipart()], ids=["rfc822", "multipart"])
def test_api_deeply_nested_mime_is_a_400_naming_mime(app: Any, parts: Clicktrail, raw: bytes) -> None:
    apikeys = pytest.importorskip("clicktrail.apikeys", reason="the API is not in this tree yet")
    _, key = apikeys.create(parts.store, "nested")
    r = app.test_client().post("/api/messages", json={"mime": raw.decode(), "recipients": ["r@example.com"]},
                               headers={"Authorization": f"Bearer {key}"})
    answer = r.get_json()
    assert r.status_code == 400 and answer["field"] == "mime" and "nested" in answer["error"], answer


def test_api_from_header_with_comments_nested_deep(app: Any, parts: Clicktrail) -> None:
    apikeys = pytest.importorskip("clicktrail.apikeys", reason="the API is not in this tree yet")
    _, key = apikeys.create(parts.store, "nested")
    client, auth = app.test_client(), {"Authorization": f"Bearer {key}"}
    for body in ({"mime": NESTED_FROM.decode(), "recipients": "r@example.com"}, {"mime": NESTED_FROM.decode(), "send": True}):
        r = client.post("/api/messages", json=body, headers=auth)  # whose click domain? the caller is told, not guessed
        assert r.status_code == 400 and r.get_json()["field"] == "mime" and "From" in r.get_json()["error"]
    assert parts.store.attempts() is not None and list(parts.store.attempts()) == []  # nothing recorded


@pytest.mark.parametrize("name", ["from", "recipients"])
def test_api_addresses_with_comments_nested_deep_are_refused(app: Any, parts: Clicktrail, name: str) -> None:
    apikeys = pytest.importorskip("clicktrail.apikeys", reason="the API is not in this tree yet")
    _, key = apikeys.create(parts.store, "nested")
    body = {"html": "<p>x</p>", "from": "a@example.com", "recipients": "r@example.com", name: "(" * 50_000 + "a@example.com"}
    r = app.test_client().post("/api/messages", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400 and r.get_json()["field"] == name, r.get_data(as_text=True)[:300]
