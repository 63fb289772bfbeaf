"""JSON text of many copies of one message, which differ only in their identifiers.

Escaping a 48 KB copy for JSON costs more than stamping it (BENCHMARKS.md),
so the text of the first copy is escaped once, cut where the identifiers of
the next copies differ from it, and each later copy is its identifier
characters set between the escaped pieces.  A copy that differs anywhere
else, or whose characters there would need escaping, is escaped in full:
the answer is always exactly ``json.dumps(text, ensure_ascii=False)``.
"""

from __future__ import annotations

import json
import re

_SAFE = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but " and \: JSON writes them as they are
_PROBES = 3  # copies compared with the first to find where identifiers sit: a character they all share is missed


class Escaper:
    """JSON string literals of the copies of one message, in order."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.probes: list[str] = []
        self.cuts: list[tuple[int, int]] | None = None  # [start, end) spans where copies differ from the first
        self.raw: list[str] = []  # the first copy's text between the spans
        self.pieces: list[str] = []  # the same, escaped

    def __call__(self, text: str) -> str:
        if self.first is None:
            self.first = text
        elif self.cuts is None and len(text) == len(self.first) and len(self.probes) < _PROBES:
            self.probes.append(text)
            if len(self.probes) == _PROBES:
                self._cut()
        elif self.cuts is not None:
            fast = self._fast(text)
            if fast is not None:
                return fast
        return json.dumps(text, ensure_ascii=False)

    def _cut(self) -> None:
        first = self.first
        assert first is not None
        differ = bytearray(len(first))
        for probe in self.probes:
            for i in _differences(first, probe):
                differ[i] = 1
        cuts, pos = [], 0
        for m in re.finditer(b"\x01+", bytes(differ)):
            cuts.append((m.start(), m.end()))
        raw = []
        for start, end in cuts:
            raw.append(first[pos:start])
            pos = end
        raw.append(first[pos:])
        self.cuts, self.raw = cuts, raw
        self.pieces = [json.dumps(r, ensure_ascii=False)[1:-1] for r in raw]

    def _fast(self, text: str) -> str | None:
        first, cuts = self.first, self.cuts
        assert first is not None and cuts is not None
        if len(text) != len(first):
            return None
        chars = [text[start:end] for start, end in cuts]
        raw = [""] * (2 * len(chars) + 1)  # the first copy's text between the cuts, this copy's in them
        raw[0::2], raw[1::2] = self.raw, chars
        joined = "".join(chars)
        if "".join(raw) != text or not _SAFE.fullmatch(joined):
            return None  # differs elsewhere, or needs escaping there: escaped in full
        out = [""] * (2 * len(chars) + 1)
        out[0::2], out[1::2] = self.pieces, chars
        return '"' + "".join(out) + '"'


def _differences(a: str, b: str, width: int = 256) -> list[int]:
    """Where two texts of one length differ (slices compared in C, then characters where they differ)."""
    found = []
    for start in range(0, len(a), width):
        if a[start:start + width] != b[start:start + width]:
            found += [i for i in range(start, min(start + width, len(a))) if a[i] != b[i]]
    return found
