"""`clicktrail domains check`: against a tiny DNS server of the test's own on 127.0.0.1 (UDP and TCP)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from clicktrail import dns
from clicktrail.cli import main

TRACKER = "clicks.example.com"  # the host of the test settings' click domain
TRACKER_V4, TRACKER_V6 = "198.51.100.7", "2001:db8::7"


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


@dataclass
class Zone:
    """What the resolver knows: CNAMEs, addresses, and names it fails on."""

    cnames: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    rcodes: dict[str, int] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)  # over UDP, answer these with TC set and no records
    silent: set[str] = field(default_factory=set)  # never answer these

    def answer(self, query: bytes, tcp: bool) -> bytes | None:
        ident, _ = struct.unpack(">HH", query[:4])
        pos, labels = 12, []
        while query[pos]:
            labels.append(query[pos + 1 : pos + 1 + query[pos]].decode())
            pos += 1 + query[pos]
        qtype = struct.unpack(">H", query[pos + 1 : pos + 3])[0]
        question = query[12 : pos + 5]
        name = ".".join(labels).lower()
        if name in self.silent:
            return None
        flags, records = 0x8180, []  # a response, recursion desired and available
        if name in self.rcodes:
            flags |= self.rcodes[name]
        elif name in self.truncate and not tcp:
            flags |= 0x0200
        else:
            owner = b"\xc0\x0c"  # a compression pointer to the question's name
            seen = name
            while seen in self.cnames:  # a recursive resolver returns the whole chain
                target = self.cnames[seen]
                records.append(owner + struct.pack(">HHIH", dns.CNAME, 1, 300, len(wire_name(target)))
                               + wire_name(target))
                owner, seen = wire_name(target), target
            for address in self.addresses.get(seen, []):
                if qtype == dns.A and ":" not in address:
                    raw = socket.inet_pton(socket.AF_INET, address)
                elif qtype == dns.AAAA and ":" in address:
                    raw = socket.inet_pton(socket.AF_INET6, address)
                else:
                    continue
                records.append(owner + struct.pack(">HHIH", qtype, 1, 300, len(raw)) + raw)
            if not records and seen not in self.addresses and seen not in self.cnames:
                flags |= dns.NXDOMAIN
        return struct.pack(">HHHHHH", ident, flags, 1, len(records), 0, 0) + question + b"".join(records)


@pytest.fixture
def zone() -> Zone:
    return Zone(addresses={TRACKER: [TRACKER_V4, TRACKER_V6]})


@pytest.fixture
def resolver(zone: Zone) -> Iterator[str]:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) answering from ``zone``; yields its address."""
    for _ in range(20):  # a free UDP port whose TCP twin is free too
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
            break
        except OSError:
            udp.close()
            tcp.close()
    tcp.listen()
    stop = threading.Event()

    def serve_udp() -> None:
        udp.settimeout(0.1)
        while not stop.is_set():
            try:
                query, peer = udp.recvfrom(512)
            except TimeoutError:
                continue
            reply = zone.answer(query, tcp=False)
            if reply is not None:
                udp.sendto(reply, peer)

    def serve_tcp() -> None:
        tcp.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                size = struct.unpack(">H", conn.recv(2))[0]
                reply = zone.answer(conn.recv(size), tcp=True)
                if reply is not None:
                    conn.sendall(struct.pack(">H", len(reply)) + reply)

    threads = [threading.Thread(target=serve_udp), threading.Thread(target=serve_tcp)]
    for t in threads:
        t.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        for t in threads:
            t.join()
        udp.close()
        tcp.close()


def check(resolver: str, domain: str, *extra: str) -> tuple[int, str]:
    out = CliRunner().invoke(main, ["domains", "check", domain, "--resolver", resolver, *extra])
    assert "Traceback" not in out.output
    return out.exit_code, out.output


def test_a_cname_to_the_tracker_is_right(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.cnames["offers.shop.example"] = TRACKER
    assert check(resolver, "offers.shop.example") == (0, f"ok: offers.shop.example is an alias (CNAME) of {TRACKER}\n")


def test_a_cname_chain_through_the_tracker_is_right(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.cnames.update({"go.shop.example": "links.shop.example", "links.shop.example": TRACKER})
    code, output = check(resolver, "https://go.shop.example")
    assert code == 0 and f"alias (CNAME) of {TRACKER}" in output


def test_an_address_record_of_the_trackers_address_is_right(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.addresses["shop.example"] = [TRACKER_V4]
    assert check(resolver, "shop.example") == (0, f"ok: shop.example points at {TRACKER_V4}, an address of {TRACKER}\n")


def test_a_cname_elsewhere_gets_the_exact_record_to_create(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.cnames["offers.shop.example"] = "old-esp.example"
    zone.addresses["old-esp.example"] = ["192.0.2.1"]
    code, output = check(resolver, "offers.shop.example")
    assert code == 1
    assert output.splitlines() == [
        f"offers.shop.example points at CNAME old-esp.example, 192.0.2.1, not at {TRACKER}"
        f" ({TRACKER_V4}, {TRACKER_V6}).",
        "Create this record (replacing any other CNAME, A or AAAA record of the name):",
        f"  offers.shop.example. 3600 IN CNAME {TRACKER}.",
        "At a zone apex, where a CNAME is not allowed, create instead:",
        f"  offers.shop.example. 3600 IN A {TRACKER_V4}",
        f"  offers.shop.example. 3600 IN AAAA {TRACKER_V6}",
    ]


def test_a_missing_name_gets_the_record_to_create(env: dict[str, str], resolver: str) -> None:
    code, output = check(resolver, "offers.shop.example")
    assert code == 1
    assert output.splitlines()[:3] == [
        "offers.shop.example does not exist in DNS (NXDOMAIN).",
        "Create this record (replacing any other CNAME, A or AAAA record of the name):",
        f"  offers.shop.example. 3600 IN CNAME {TRACKER}.",
    ]


def test_another_target_can_be_named(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.cnames["offers.shop.example"] = "track.example.net"
    zone.addresses["track.example.net"] = ["203.0.113.5"]
    assert check(resolver, "offers.shop.example", "--target", "track.example.net")[0] == 0
    code, output = check(resolver, "offers.shop.example", "--target", "203.0.113.9")
    assert code == 1 and "  offers.shop.example. 3600 IN A 203.0.113.9" in output


def test_a_truncated_answer_is_asked_again_over_tcp(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.cnames["offers.shop.example"] = TRACKER
    zone.truncate.add("offers.shop.example")
    assert check(resolver, "offers.shop.example")[0] == 0


@pytest.mark.parametrize("rcode, name", [(2, "SERVFAIL"), (5, "REFUSED")])
def test_a_failing_resolver_is_reported(env: dict[str, str], zone: Zone, resolver: str, rcode: int, name: str) -> None:
    zone.rcodes["offers.shop.example"] = rcode
    expected = f"Error: the resolver answered {name} for offers.shop.example\n"
    assert check(resolver, "offers.shop.example") == (1, expected)


def test_a_silent_resolver_is_reported(env: dict[str, str], zone: Zone, resolver: str) -> None:
    zone.silent.add("offers.shop.example")
    code, output = check(resolver, "offers.shop.example", "--timeout", "0.2")
    assert (code, output) == (1, f"Error: the resolver {resolver} did not answer within 0.2 s\n")


def test_an_absent_resolver_is_reported(env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, output = check(f"127.0.0.1:{port}", "offers.shop.example", "--timeout", "2")
    assert code == 1 and output.startswith("Error: the resolver 127.0.0.1:") and "refused" in output


@pytest.mark.parametrize("args, message", [
    (["offers.shop.example", "--resolver", "dns.example"], "is not a resolver address"),
    (["offers.shop.example", "--resolver", "127.0.0.1:0"], "the port must be between"),
    (["not a domain", "--resolver", "127.0.0.1"], "is not a domain name"),
])
def test_bad_arguments_are_named(env: dict[str, str], args: list[str], message: str) -> None:
    out = CliRunner().invoke(main, ["domains", "check", *args])
    assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output


def test_the_resolver_comes_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\n")
    assert dns.system_server(str(conf)) == ("fe80::1", 53)
    conf.write_text("search example\n")
    with pytest.raises(dns.DNSError, match="names no nameserver"):
        dns.system_server(str(conf))


def test_malformed_answers_are_refused() -> None:
    question = dns.encode_name("a.example") + struct.pack(">HH", dns.A, 1)
    header = struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0)
    loop = header + question + b"\xc0\x1b" + struct.pack(">HHIH", dns.A, 1, 1, 4) + b"\x01\x02\x03\x04"
    with pytest.raises(dns.DNSError, match="malformed name"):
        dns._parse(loop, 7, question)
    with pytest.raises(dns.DNSError, match="truncated"):
        dns._parse(header + question + b"\xc0\x0c" + struct.pack(">HHIH", dns.A, 1, 1, 4) + b"\x01", 7, question)
    with pytest.raises(dns.DNSError, match="does not match"):
        dns._parse(header + question, 8, question)
