"""A small DNS stub resolver: one question over UDP (TCP when truncated) to a chosen server.

Enough for ``clicktrail domains check``: A, AAAA and CNAME answers, with the
CNAME chain a recursive resolver returns.  The server is given explicitly
(default: the first ``nameserver`` of /etc/resolv.conf) so a test can point
it at a server of its own on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from dataclasses import dataclass, field

from .errors import ClicktrailError

A, CNAME, AAAA = 1, 5, 28
TYPE_NAMES = {A: "A", CNAME: "CNAME", AAAA: "AAAA"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
NOERROR, NXDOMAIN = 0, 3
_HEADER = struct.Struct(">HHHHHH")
_RR = struct.Struct(">HHIH")


class DNSError(ClicktrailError):
    """The name could not be resolved: no answer, a bad answer, or a server failure."""


@dataclass(frozen=True)
class Record:
    name: str
    type: int
    value: str  # an address, or the target name of a CNAME


@dataclass
class Answer:
    rcode: int
    records: list[Record] = field(default_factory=list)


def parse_server(text: str) -> tuple[str, int]:
    """Read ``ADDR``, ``ADDR:PORT`` or ``[V6]:PORT`` into (address, port)."""
    text = text.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError as e:
        raise DNSError(f"{text!r} is not a resolver address such as 127.0.0.1 or 127.0.0.1:5353") from e
    if not 0 < number < 65536:
        raise DNSError(f"{text!r}: the port must be between 1 and 65535")
    return host, number


def system_server(resolv_conf: str = "/etc/resolv.conf") -> tuple[str, int]:
    """The first nameserver of resolv.conf."""
    try:
        with open(resolv_conf) as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    return parse_server(words[1].split("%")[0])
    except OSError as e:
        raise DNSError(f"cannot read {resolv_conf} to find a resolver ({e}); give one with --resolver") from e
    raise DNSError(f"{resolv_conf} names no nameserver; give one with --resolver")


def encode_name(name: str) -> bytes:
    """A domain name in wire format (IDN labels in punycode)."""
    out = b""
    for label in name.rstrip(".").split("."):
        try:
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        except UnicodeError as e:
            raise DNSError(f"{name!r} is not a valid domain name") from e
        if not 0 < len(raw) < 64:
            raise DNSError(f"{name!r} is not a valid domain name")
        out += bytes([len(raw)]) + raw
    if len(out) > 254:
        raise DNSError(f"{name!r} is too long for a domain name")
    return out + b"\x00"


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    for _ in range(128):  # bounds compression-pointer loops
        if pos >= len(msg):
            raise DNSError("the resolver sent a truncated answer")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise DNSError("the resolver sent a truncated answer")
            end = pos + 2 if end is None else end
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
        elif n == 0:
            return ".".join(labels).lower(), (pos + 1 if end is None else end)
        else:
            labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
    raise DNSError("the resolver sent a malformed name")


def _parse(msg: bytes, ident: int, question: bytes) -> tuple[Answer, bool]:
    if len(msg) < _HEADER.size:
        raise DNSError("the resolver sent a truncated answer")
    rid, flags, qd, an, _, _ = _HEADER.unpack_from(msg)
    if rid != ident or not flags & 0x8000 or msg[_HEADER.size : _HEADER.size + len(question)] != question:
        raise DNSError("the resolver's answer does not match the question")
    truncated = bool(flags & 0x0200)
    answer = Answer(flags & 0x000F)
    pos = _HEADER.size + len(question) if qd else _HEADER.size
    for _ in range(an):
        name, pos = _read_name(msg, pos)
        if pos + _RR.size > len(msg):
            raise DNSError("the resolver sent a truncated answer")
        rtype, _, _, rdlen = _RR.unpack_from(msg, pos)
        pos += _RR.size
        rdata = msg[pos : pos + rdlen]
        if len(rdata) != rdlen:
            raise DNSError("the resolver sent a truncated answer")
        if rtype == A and rdlen == 4:
            answer.records.append(Record(name, A, str(ipaddress.IPv4Address(rdata))))
        elif rtype == AAAA and rdlen == 16:
            answer.records.append(Record(name, AAAA, str(ipaddress.IPv6Address(rdata))))
        elif rtype == CNAME:
            answer.records.append(Record(name, CNAME, _read_name(msg, pos)[0]))
        pos += rdlen
    return answer, truncated


def _exchange_tcp(query: bytes, server: tuple[str, int], timeout: float) -> bytes:
    with socket.create_connection(server, timeout=timeout) as s:
        s.sendall(struct.pack(">H", len(query)) + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise DNSError(f"the resolver {server[0]}:{server[1]} closed the TCP connection early")
            data += chunk
        return data[2:]


def resolve(name: str, rtype: int, server: tuple[str, int], timeout: float = 3.0) -> Answer:
    """Ask ``server`` one recursive question; the answer's records and response code."""
    ident = secrets.randbits(16)
    question = encode_name(name) + struct.pack(">HH", rtype, 1)
    query = _HEADER.pack(ident, 0x0100, 1, 0, 0, 0) + question  # RD: ask for recursion
    where = f"{server[0]}:{server[1]}"
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect(server)
            s.send(query)
            while True:  # skip stray datagrams that answer something else
                msg = s.recv(65535)
                try:
                    answer, truncated = _parse(msg, ident, question)
                    break
                except DNSError:
                    if len(msg) >= 2 and struct.unpack(">H", msg[:2])[0] == ident:
                        raise
        if truncated:
            answer, _ = _parse(_exchange_tcp(query, server, timeout), ident, question)
    except TimeoutError as e:
        raise DNSError(f"the resolver {where} did not answer within {timeout:g} s") from e
    except ConnectionRefusedError as e:
        raise DNSError(f"the resolver {where} refused the connection (nothing listening there?)") from e
    except OSError as e:
        raise DNSError(f"cannot reach the resolver {where}: {e}") from e
    return answer
