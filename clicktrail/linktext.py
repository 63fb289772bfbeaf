"""Link text that reads as an address: the scam check.

Mail programs warn when a link's visible text is a URL or host name and the
link goes elsewhere, so such a link is not rewritten.  The text is read as
the reader sees it: invisible characters (soft hyphens, zero-width spaces,
bidi marks) dropped, full-width forms folded, brackets and a closing full stop
taken off.  A dotted name counts as a host when any label after its first is
a top-level domain; ``report.pdf``, ``Node.js`` and ``St.Louis`` are not hosts.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib import resources

import idna

# Shown as nothing, though not format characters (those, category Cf, all go): UTS 46 ignores them in hosts.
_IGNORED = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0") | frozenset(map(chr, range(0xFE00, 0xFE10)))
_DOTS = str.maketrans("\u3002\uff0e\uff61", "...")  # ideographic and full-width full stops
_WRAPPERS = "<>(){}\"'«»‹›“”„‘’‚「」『』"
_ENDING = ".,;:!?…"
_SCHEME = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://")
_PATH = re.compile(r"[/?#\\]")
_LABEL = re.compile(r"^[\w-]+$")
_IPV4 = re.compile(r"(?i)^(?:0x[0-9a-f]+|\d+)(?:\.(?:0x[0-9a-f]+|\d+)){3}\.?(?::\d*)?$")
_IPV6 = re.compile(r"(?i)^\[[0-9a-f:.]+\](?::\d*)?$")
# Names that resolve or are reserved without being in the root zone (RFC 2606, 6761, 6762, 7686, 9476).
_SPECIAL = frozenset({"example", "invalid", "localhost", "test", "local", "onion", "alt", "internal"})


@cache
def top_level_domains() -> frozenset[str]:
    """Return the IANA top-level domains, lower-case (IDN ones in punycode)."""
    text = resources.files("clicktrail").joinpath("tlds.txt").read_text("ascii")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def _shown(text: str) -> str:
    kept = "".join(ch for ch in text if ch not in _IGNORED and unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", kept).translate(_DOTS)


def _may_be_tld(label: str) -> bool:
    label = label.lower()
    if not label.isascii():
        try:
            label = idna.encode(label, uts46=True).decode("ascii")
        except UnicodeError:
            return True  # unsure: count it as one
    return label in _SPECIAL or label in top_level_domains()


def looks_like_address(text: str) -> bool:
    """Tell whether link text reads as a URL, host name or IP address (``bank.com``, ``https://…``, ``10.0.0.1``)."""
    text = _shown(text).strip()
    while not _IPV6.match(_PATH.split(text, maxsplit=1)[0]):  # "[::1]" keeps its brackets
        bare = text.strip(_WRAPPERS).rstrip(_ENDING).strip()
        if bare == text:
            bare = text.strip("[]")
        if bare == text:
            break
        text = bare
    if not text or any(ch.isspace() for ch in text):
        return False
    if _SCHEME.match(text):
        return True
    host = _PATH.split(text, maxsplit=1)[0]
    if _IPV4.match(host) or _IPV6.match(host):
        return True
    name, colon, port = host.partition(":")
    labels = name.removesuffix(".").split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or (colon and not port.isdigit()):
        return False
    # A port or "www." says URL whatever the ending is; else a label must be a real top-level domain.
    return bool(colon) or labels[0].lower() == "www" or any(_may_be_tld(label) for label in labels[1:])
