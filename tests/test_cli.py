"""cli: the clicktrail command as users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from clicktrail.cli import main

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"From: a@example.com\nTo: ann@example.com\nSubject: Hi\nContent-Type: text/html\n\n" \
          b'<body><a href="https://e.com/x?y=1">x</a></body>\n'


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run the installed console script, as a user would."""
    exe = str(Path(sys.executable).with_name("clicktrail"))
    return subprocess.run([exe, *args], input=stdin, capture_output=True, timeout=60, env=os.environ.copy())


def test_rewrite_from_stdin_to_stdout_then_logs(env: dict[str, str]) -> None:
    out = run("rewrite", "--tag", "news", stdin=MESSAGE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(b"From: a@example.com\nTo: ann@example.com\n")
    assert b"https://clicks.example.com/" in out.stdout and b'href="https://e.com/x' not in out.stdout
    logs = run("logs", "attempts")
    (attempt,) = [json.loads(line) for line in logs.stdout.splitlines()]
    assert attempt["recipient"] == "ann@example.com" and attempt["tag"] == "news"
    assert attempt["subject"] == "Hi" and attempt["links"] == ["https://e.com/x?y=1"]


def test_rewrite_file_with_recipient(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "m.html"
    f.write_bytes(b'<a href="https://e.com/">go</a>')
    out = run("rewrite", "--recipient", "bob@example.com", str(f))
    assert out.returncode == 0 and out.stdout.startswith(b'<a href="https://clicks.example.com/')
    assert json.loads(run("logs", "attempts").stdout)["recipient"] == "bob@example.com"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("rewrite",), b"", "the input is empty"),
        (("rewrite", "/no/such/file"), b"", "No such file"),
        (("logs", "bounces"), b"", "Invalid value"),
        (("logs", "clicks", "--since", "yesterday"), b"", "is not an ISO 8601 time"),
        (("rewrite",), b"From: a@e.com\nX-Clicktrail-Trackclicks: perhaps\n\nx", "must be yes or no"),
    ],
)
def test_bad_input_gets_a_clear_error_not_a_traceback(env: dict[str, str], args: tuple[str, ...], stdin: bytes,
                                                       message: str) -> None:
    out = run(*args, stdin=stdin)
    assert out.returncode != 0
    assert message in out.stderr.decode() and b"Traceback" not in out.stderr


def test_bad_setting_stops_with_the_setting_named(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKTRAIL_TRUSTED_PROXIES", "many")
    out = run("logs", "clicks")
    assert out.returncode != 0 and b"CLICKTRAIL_TRUSTED_PROXIES" in out.stderr and b"Traceback" not in out.stderr


def test_unreadable_message_passes_through_with_a_warning(env: dict[str, str]) -> None:
    raw = b'From: a@e.com\nContent-Type: multipart/mixed; boundary="X"\n\n--X\n\n<a href="https://e.com/">x</a>\n'
    out = run("rewrite", stdin=raw)
    assert out.returncode == 0 and out.stdout == raw and b"warning: message passed through unchanged" in out.stderr


def test_logs_since_filters(env: dict[str, str]) -> None:
    run("rewrite", stdin=MESSAGE)
    assert run("logs", "attempts", "--since", "2000-01-01").stdout.count(b"\n") == 1
    assert run("logs", "attempts", "--since", "2999-01-01T00:00:00Z").stdout == b""


def test_demo_prepares_links_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("CLICKTRAIL_")]:
        monkeypatch.delenv(k)
    result = CliRunner().invoke(main, ["demo", "--data", str(tmp_path / "demo"), "--no-serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/stats   password: " in result.output
    assert result.output.count("[click] http://127.0.0.1:8123/") >= 4
    assert (tmp_path / "demo" / "newsletter-rewritten.eml").exists()


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in main.commands:
        assert f"clicktrail {name}" in readme, name


@pytest.mark.parametrize(("args", "message"), [
    (("--tag", "a\udcadb"), "Invalid value for --tag"), (("--tag", "x" * 201), "Invalid value for --tag"),
    (("--recipient", "a@b.c\nBcc: e@vil.example"), "not a valid email address"),
    (("--recipient", "nobody"), "not a valid email address"),
])
def test_bad_tag_or_recipient_is_refused_before_anything_is_recorded(env: dict[str, str], args: tuple[str, ...],
                                                                     message: str) -> None:
    out = run("rewrite", *args, stdin=MESSAGE)
    assert out.returncode == 2 and message in out.stderr.decode() and b"Traceback" not in out.stderr
    assert run("logs", "attempts").stdout == b""


def test_a_warning_is_printed_once(env: dict[str, str]) -> None:
    raw = b'From: a@e.com\nContent-Type: multipart/mixed; boundary="X"\n\n--X\n\nbroken\n'
    assert run("rewrite", stdin=raw).stderr.decode().count("passed through unchanged") == 1


@pytest.mark.parametrize("args", [("serve", "--port", "-1"), ("serve", "--port", "65536"), ("demo", "--port", "99999"),
                                  ("demo", "--no-serve", "--data", "/proc/no-such-folder")])
def test_bad_port_or_demo_folder_is_a_clear_error(env: dict[str, str], args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert args[-2] in result.output  # names the option


def test_a_dkim_signed_message_passes_untouched_unless_rewriting_is_allowed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = (ROOT.parent / "shared" / "corpus" / "mime" / "mimekit-dkim-related.eml").read_bytes()
    assert b"DKIM-Signature" in signed
    out = run("rewrite", stdin=signed)
    assert out.returncode == 0 and out.stdout == signed  # a rewrite would break the signature
    assert b"DKIM-Signature" in out.stderr and b"untouched" in out.stderr
    monkeypatch.setenv("CLICKTRAIL_SMTP_REWRITE_DKIM", "yes")
    out = run("rewrite", stdin=signed)
    assert out.returncode == 0 and b"\nDKIM-Signature:" not in out.stdout and b"https://clicks.example.com/" in out.stdout
    assert b"removed" in out.stderr
def test_rewrite_of_a_from_header_too_deeply_nested_to_read_uses_the_default_click_domain(
        env: dict[str, str]) -> None:
    deep = MESSAGE.replace(b"From: a@example.com", b"From: " + b"(" * 500)
    out = run("rewrite", stdin=deep)
    assert out.returncode == 0 and b"Traceback" not in out.stderr, out.stderr
    assert b"the From header cannot be read" in out.stderr
    assert b"https://clicks.example.com/" in out.stdout and b'href="https://e.com/x' not in out.stdout


def test_rewrite_records_the_bare_addresses_of_to(env: dict[str, str]) -> None:
    to_two = MESSAGE.replace(b"To: ann@example.com", b"To: Ann <ann@example.com>, bob@example.com")
    assert run("rewrite", stdin=to_two).returncode == 0
    assert json.loads(run("logs", "attempts").stdout)["recipient"] == "ann@example.com, bob@example.com"


def test_a_second_recipient_is_refused_not_dropped(env: dict[str, str]) -> None:
    out = run("rewrite", "--recipient", "a@example.com", "--recipient", "b@example.com", stdin=MESSAGE)
    assert out.returncode == 2 and b"one recipient per run" in out.stderr and out.stdout == b""
