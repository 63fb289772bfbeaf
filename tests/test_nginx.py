"""End to end behind real nginx: the repo's site (ports and paths adapted) in front of gunicorn.

A reader's click on a custom click domain lands exactly on the original URL;
the logged client address is the one nginx saw, whatever X-Forwarded-For the
client sent; names that are not ours get 404.
"""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need
from servers import free_port, gunicorn, stop_group

from clicktrail import config as config_mod
from clicktrail import domains
from clicktrail.messages import track
from clicktrail.tracker import build

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DEFAULT = "clicks.example.com"  # the names in deploy/nginx-clicktrail.conf
CUSTOM = "offers.shop.example"
READER = "127.0.0.2"  # the reader connects from here; nginx itself reaches gunicorn from 127.0.0.1
TARGETS = [
    "https://shop.example/a%2Fb/c+d/%C3%A9t%C3%A9?q=a+b%2Fc&x=%E2%82%AC#top",
    "https://shop.example/caf\u00e9/\u00fcber+alles/%2f%2F?s=%26+%2B",
    "https://shop.example/%7Euser/x%20y/%E6%97%A5%E6%9C%AC;p=1|[2]^?",
]


def site_config(tmp: Path, http_port: int, tls_port: int, upstream: int, cert: Path, key: Path) -> str:
    """deploy/nginx-clicktrail.conf with only its ports and paths changed (IPv6 listens dropped)."""
    text = (DEPLOY / "nginx-clicktrail.conf").read_text()
    assert "proxy_pass http://127.0.0.1:8000;" in text
    text = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", text, flags=re.M)
    text = re.sub(r"listen 443\b", f"listen 127.0.0.1:{tls_port}", text)
    text = re.sub(r"listen 80\b", f"listen 127.0.0.1:{http_port}", text)
    text = text.replace("proxy_pass http://127.0.0.1:8000;", f"proxy_pass http://127.0.0.1:{upstream};")
    text = text.replace(f"/etc/letsencrypt/live/{DEFAULT}/fullchain.pem", str(cert))
    text = text.replace(f"/etc/letsencrypt/live/{DEFAULT}/privkey.pem", str(key))
    text = text.replace("/var/www/html", str(tmp / "www"))
    text = text.replace("/var/log/nginx/", f"{tmp}/")
    directives = re.sub(r"#.*", "", text)
    assert "/etc/" not in directives and "/var/" not in directives
    return text


def main_config(tmp: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's private temp files
    temps = "".join(f"    {name}_temp_path {tmp}/{name};\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log info;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n    access_log {tmp}/access.log;\n{temps}    include {site};\n}}\n")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={DEFAULT}",
         "-addext", f"subjectAltName=DNS:{DEFAULT},DNS:{CUSTOM}"],
        check=True, capture_output=True)
    return cert, key


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def fetch(port: int, host: str, target: str, *, sni: str | None = None, cafile: Path | None = None,
          headers: tuple[str, ...] = ()) -> tuple[int, dict[str, str]]:
    """One raw HTTP/1.1 GET from the reader's address: the request line is sent byte for byte."""
    sock: Any = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(READER, 0))
    if cafile is not None:
        ctx = ssl.create_default_context(cafile=str(cafile))
        sock = ctx.wrap_socket(sock, server_hostname=sni or host)
    with sock:
        head = [f"GET {target} HTTP/1.1", f"Host: {host}", "Connection: close", *headers, "", ""]
        sock.sendall("\r\n".join(head).encode("ascii"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}


@pytest.fixture
def stack(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """gunicorn (with deploy/gunicorn.conf.py) behind nginx (with deploy/nginx-clicktrail.conf)."""
    nginx = need("nginx")
    cert, key = self_signed(tmp_path)
    env = {**env, "CLICKTRAIL_CLICK_DOMAIN": f"https://{DEFAULT}", "CLICKTRAIL_TRUSTED_PROXIES": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    parts = build(config_mod.load())
    domains.add(parts.store, "from", "shop.example", f"https://{CUSTOM}")
    (tmp_path / "www" / ".well-known" / "acme-challenge").mkdir(parents=True)
    (tmp_path / "www" / ".well-known" / "acme-challenge" / "tok3n").write_text("challenge answer")
    # gunicorn's access log keeps the request line as it reached the app.
    access = tmp_path / "gunicorn-access.log"
    extra = ("--config", str(DEPLOY / "gunicorn.conf.py"), "--access-logfile", str(access),
             "--access-logformat", "%(r)s")
    with gunicorn(env, extra=extra) as (base, _):
        http_port, tls_port = free_port(), free_port()
        upstream = int(base.rsplit(":", 1)[1])
        site = tmp_path / "site.conf"
        site.write_text(site_config(tmp_path, http_port, tls_port, upstream, cert, key))
        conf = tmp_path / "nginx.conf"
        conf.write_text(main_config(tmp_path, site))
        errors = tmp_path / "error.log"
        proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(errors)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(tls_port, proc, errors)
            wait_port(http_port, proc, errors)
            yield {"parts": parts, "http": http_port, "tls": tls_port, "cert": cert, "access": access}
        finally:
            stop_group(proc, signal.SIGQUIT)  # nginx's graceful stop


def request_lines(log: Path, want: int) -> list[str]:
    """The tracked requests gunicorn logged, once it has written ``want`` (it logs after answering)."""
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        lines = [line for line in text.splitlines() if not line.startswith("GET / ")]  # start-up probes
        if len(lines) >= want:
            break
        time.sleep(0.05)
    return lines


def tracked(parts: Any, sender: str) -> list[tuple[str, str]]:
    """Rewrite a message from ``sender``; (tracked path on its click domain, original URL) per link."""
    page = "".join(f'<p><a href="{url}">link {i}</a></p>' for i, url in enumerate(TARGETS))
    raw = (f"From: News <{sender}>\r\nTo: ann@example.com\r\nSubject: Sale\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           f"<html><body>{page}</body></html>\r\n").encode()
    result = track(parts.store, parts.signer, parts.options, raw)
    body = result.copies[0].data.decode()
    hrefs = re.findall(r'<a href="([^"]+)"', body)
    originals = [url for _, url in result.prepared.links.links if _ == "click"]
    assert len(hrefs) == len(originals) == len(TARGETS)
    prefix = result.click_domain
    assert all(h.startswith(prefix + "/") for h in hrefs)
    # What a browser requests: the attribute's entities decoded, the fragment kept to itself.
    paths = [html.unescape(h)[len(prefix):].partition("#")[0] for h in hrefs]
    return list(zip(paths, originals, strict=True))


def test_a_click_on_a_custom_click_domain_lands_exactly(stack: dict[str, Any]) -> None:
    links = tracked(stack["parts"], "news@shop.example")
    assert "%2F" in links[0][0] and "+" in links[0][0] and "%C3%A9" in links[1][0]
    for path, original in links:
        status, headers = fetch(stack["tls"], CUSTOM, path, cafile=stack["cert"])
        assert (status, headers["location"]) == (302, original)
    clicked = sorted(c["url"] for c in stack["parts"].store.events("click"))  # each worker stores in its own time
    assert clicked == sorted(original for _, original in links)
    # nginx passed each request URI on unchanged (no decoding, no re-encoding, no merged slashes).
    assert request_lines(stack["access"], len(links)) == [f"GET {path} HTTP/1.0" for path, _ in links]


def test_the_logged_address_is_the_one_nginx_saw_not_a_forged_one(stack: dict[str, Any]) -> None:
    path, original = tracked(stack["parts"], "news@shop.example")[0]
    status, headers = fetch(stack["tls"], CUSTOM, path, cafile=stack["cert"],
                            headers=("X-Forwarded-For: 203.0.113.66", "X-Forwarded-Host: evil.example",
                                     "X-Forwarded-Proto: gopher", "User-Agent: reader/1.0"))
    assert (status, headers["location"]) == (302, original)
    clicks = list(stack["parts"].store.events("click"))
    assert [(c["ip"], c["url"], c["user_agent"]) for c in clicks] == [(READER, original, "reader/1.0")]


def test_default_domain_links_work_on_the_default_domain_only(stack: dict[str, Any]) -> None:
    default_path, original = tracked(stack["parts"], "news@elsewhere.example")[0]
    custom_path, _ = tracked(stack["parts"], "news@shop.example")[0]
    status, headers = fetch(stack["tls"], DEFAULT, default_path, cafile=stack["cert"])
    assert (status, headers["location"]) == (302, original)
    # A link minted for one click domain is refused on another, though both are ours.
    assert fetch(stack["tls"], CUSTOM, default_path, cafile=stack["cert"])[0] == 404
    assert fetch(stack["tls"], DEFAULT, custom_path, cafile=stack["cert"])[0] == 404


def test_an_unknown_host_gets_404(stack: dict[str, Any]) -> None:
    path, _ = tracked(stack["parts"], "news@shop.example")[0]
    # TLS for one of our names, then a Host that is not ours.
    assert fetch(stack["tls"], "evil.example", path, sni=CUSTOM, cafile=stack["cert"])[0] == 404
    assert fetch(stack["http"], "evil.example", path)[0] == 404
    assert fetch(stack["http"], "evil.example", "/stats")[0] == 404
    with pytest.raises(ssl.SSLError):  # and no certificate at all for a name that is not ours
        fetch(stack["tls"], "evil.example", path, cafile=stack["cert"])
    assert list(stack["parts"].store.events("click")) == []


def test_plain_http_redirects_to_https_and_serves_certbot_challenges(stack: dict[str, Any]) -> None:
    path, _ = tracked(stack["parts"], "news@shop.example")[0]
    status, headers = fetch(stack["http"], CUSTOM, path)
    assert (status, headers["location"]) == (301, f"https://{CUSTOM}{path}")
    assert fetch(stack["http"], CUSTOM, "/.well-known/acme-challenge/tok3n")[0] == 200
