"""The URL a browser requests when it follows a link, and the tracked form of it.

``browser_url`` applies what the WHATWG URL parser does to an ``http(s)``
link before requesting it: surrounding whitespace and inner tabs/newlines
dropped, scheme and host lower-cased, IDN hosts mapped by UTS #46 and put in
punycode, default ports dropped, backslashes before the query read as
slashes, ``.`` and ``..`` path segments resolved, spaces and non-ASCII
percent-encoded as UTF-8.  Existing ``%XX`` escapes, ``+``, query order and
the fragment are kept byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

# Unrendered merge tags of the common sending tools: such a link is not a
# real address yet, so it is left alone.
PLACEHOLDER = re.compile(r"\{|\}|\*\||\|\*|<%|%>|%%|\[\[|\]\]")
_SCHEME = re.compile(r"(?i)^(https?)://")
_C0_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
_HOST = re.compile(r"^(?:[a-z0-9_~!$&'()*+,;=.-]+|\[[0-9a-f:.]+\])$")

# WHATWG percent-encode sets (beyond C0 controls and non-ASCII).
_FRAGMENT_SET = frozenset(' "<>`')
_QUERY_SET = frozenset(" \"#<>'")
_PATH_SET = frozenset(' "#<>?`{}')
_USERINFO_SET = _PATH_SET | frozenset("/:;=@[\\]^|")
# WHATWG single- and double-dot path segments, compared lower-cased.
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def _encode(part: str, unsafe: frozenset[str]) -> str:
    if part.isascii() and not any(c in unsafe or c < " " or c == "\x7f" for c in part):
        return part
    out = []
    for ch in part:
        if ch in unsafe or ch < " " or ord(ch) >= 0x7F:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _punycode(host: str) -> str:
    """Map an IDN host to ASCII as browsers do; raise UnicodeError for a host they refuse."""
    # UTS #46, non-transitional: "ß" stays "ß", soft hyphens and zero-width spaces are
    # dropped, full-width letters and dots mapped.  idna is stricter than browsers in
    # places (underscores, label length): such a host raises, and the link is left alone.
    return str(idna.encode(host, uts46=True).decode("ascii"))


def _resolve_dots(path: str) -> str:
    """Remove "." and ".." segments from an http(s) path as the WHATWG URL parser does."""
    if "." not in path and "%2e" not in path.lower():
        return path or "/"
    segments = path[1:].split("/")
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        lowered = segment.lower()
        if lowered in _DOUBLE_DOT:
            if out:
                out.pop()
            if last:
                out.append("")  # "/a/.." is "/", not ""
        elif lowered in _SINGLE_DOT:
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _port(host: str) -> str | None:
    """The host with its port as the browser writes it ("0443" is 443); None if out of range."""
    if host.endswith("]") or ":" not in host.rpartition("@")[2]:
        return host
    name, _, port = host.rpartition(":")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        return None  # the browser refuses the link
    return f"{name}:{int(port)}"


def _host(authority: str) -> str | None:
    userinfo, _, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]") + 1
        host, sep, port = hostport[:close], hostport[close : close + 1], hostport[close + 1 :]
        if close == 0 or sep not in ("", ":"):
            return None
    else:
        host, sep, port = hostport.partition(":")
    if port and not port.isdigit():
        return None
    if not host:
        return None
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = _punycode(host)  # case mapping is part of UTS #46
        except UnicodeError:
            return None
    if not _HOST.match(host):
        return None
    out = host
    if port:
        out += ":" + port
    if userinfo:
        user, colon, password = userinfo.partition(":")
        out = _encode(user, _USERINFO_SET) + colon + _encode(password, _USERINFO_SET) + "@" + out
    return out


def browser_url(raw: str) -> str | None:
    """Return the exact URL a browser requests for this href, or None if not http(s)."""
    url = raw.strip(_C0_SPACE).translate(_TAB_NEWLINE)
    m = _SCHEME.match(url)
    if not m:
        return None
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return None  # undecodable bytes: we cannot know what the browser sends
    scheme = m.group(1).lower()
    rest = url[m.end() :]
    # In http(s) URLs a backslash before the query is a slash (WHATWG URL "special" schemes).
    q = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    rest = rest[:q].replace("\\", "/") + rest[q:]
    end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if 0 <= i < end:
            end = i
    authority, rest = rest[:end], rest[end:]
    host = _host(authority)
    if host is not None:
        host = _port(host)
    if host is None:
        return None
    default = ":443" if scheme == "https" else ":80"
    if host.endswith(default):
        host = host[: -len(default)]
    rest, hash_, fragment = rest.partition("#")
    path, qmark, query = rest.partition("?")
    out = [scheme, "://", host, _resolve_dots(_encode(path, _PATH_SET))]
    if qmark:
        out += ["?", _encode(query, _QUERY_SET)]
    if hash_:
        out += ["#", _encode(fragment, _FRAGMENT_SET)]
    return "".join(out)


def is_placeholder(raw: str) -> bool:
    """True when the value holds a template merge tag such as ``{{x}}`` or ``*|X|*``."""
    return bool(PLACEHOLDER.search(raw))


@dataclass(frozen=True)
class Target:
    """An original link target: the exact URL and the path shown after our identifier."""

    url: str

    @property
    def visible(self) -> str:
        """Path, query and fragment of the original, without the leading slash."""
        after_scheme = self.url.split("://", 1)[1]
        i = min((p for p in (after_scheme.find(c) for c in "/?#") if p >= 0), default=len(after_scheme))
        tail = after_scheme[i:]
        j = min((p for p in (tail.find(c) for c in "?#") if p >= 0), default=len(tail))
        # A dot segment left in the path would let the browser drop our identifier.
        path = _resolve_dots(tail[:j]) if tail[:j] else ""
        return path[1:] + tail[j:]


def tracked_url(base: str, token: str, target: Target) -> str:
    """The link we put in the message: our base, the identifier, the original path."""
    return f"{base}/{token}/{target.visible}"
