"""The URL a browser requests when it follows a link, and the tracked form of it.

``browser_url`` applies what the WHATWG URL parser does to an ``http(s)``
link before requesting it: surrounding whitespace and inner tabs/newlines
dropped, scheme and host lower-cased, IDN hosts in punycode, default ports
dropped, backslashes before the query read as slashes, spaces and non-ASCII
percent-encoded as UTF-8.  Existing ``%XX``
escapes, ``+``, query order and the fragment are kept byte for byte.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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
_DOTS = str.maketrans("\u3002\uff0e\uff61", "...")  # ideographic and full-width full stops


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
    """IDN host to ASCII as browsers do (UTS 46, non-transitional: "ß" stays "ß", not "ss")."""
    host = unicodedata.normalize("NFKC", host.translate(_DOTS)).lower()
    return ".".join(label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
                    for label in host.split("."))


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
    host = host.lower()
    if not host:
        return None
    if not host.isascii():
        try:
            host = _punycode(host)
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
    out = [scheme, "://", host, _encode(path, _PATH_SET) or "/"]
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
        return tail[1:] if tail.startswith("/") else tail


def tracked_url(base: str, token: str, target: Target) -> str:
    """The link we put in the message: our base, the identifier, the original path."""
    return f"{base}/{token}/{target.visible}"
