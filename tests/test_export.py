"""export: raw logs streamed in flat memory however long, and CSV cells a spreadsheet would run made plain."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import pytest
from flask.testing import FlaskClient

from clicktrail.export import FORMATS, neutralise
from clicktrail.logstore import Attempt
from clicktrail.tracker import Clicktrail

ROWS = 200_000


@pytest.mark.parametrize(("cell", "shown"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    (" =1+1", "' =1+1"), ("\n=1+1", "'\n=1+1"), ("  \t+1", "'  \t+1"), ("\u00a0-1", "'\u00a0-1"),
    (" \r\n @x", "' \r\n @x"),
    ("1+1", "1+1"), ("a=b", "a=b"), (" a -b", " a -b"), ("", ""), ("   ", "   "), ("Mozilla/5.0", "Mozilla/5.0"),
])
def test_cells_a_spreadsheet_would_run_get_a_leading_apostrophe(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a streamed body, holding no more than one chunk."""
    rest = b""
    for chunk in chunks:
        *whole, rest = (rest + chunk).split(b"\n")
        yield from whole
    if rest:
        yield rest


def _resident() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_200000_rows_stream_in_every_format_in_flat_memory(client: FlaskClient, auth: dict[str, str],
                                                           parts: Clicktrail) -> None:
    parts.store.record_message([("click", "https://shop.example.com/sale")],
                               [Attempt(1, "ann@example.com", "Sale", "<m@example.com>", "winter")])
    parts.store.write([(
        "INSERT INTO events (event_id, type, ts, attempt_id, link_idx, url, ip, user_agent) VALUES"
        " (?, 'click', ?, 1, 1, 'https://shop.example.com/sale', '192.0.2.7', 'Mozilla/5.0')",
        [(f"e{i:07d}", f"2026-01-01T{i // 36_000:02d}:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10:06d}+00:00")
         for i in range(ROWS)])])
    for fmt in FORMATS:
        prefix = b"e" if fmt == "csv" else b'{"id": "e'
        # Resident memory, not tracemalloc: tracing every allocation makes this download six times slower.
        before = highest = _resident()
        resp = client.get(f"/api/logs/clicks?format={fmt}", headers=auth, buffered=False)
        assert resp.status_code == 200 and resp.is_streamed
        size = seen = 0
        for line in _lines(resp.response):
            size += len(line) + 1
            if line.startswith(prefix):  # a row: every id arrives, in order, once
                assert line[len(prefix):len(prefix) + 7] == b"%07d" % seen, (fmt, line[:40])
                seen += 1
                if seen % 5000 == 0:
                    highest = max(highest, _resident())
        resp.close()
        assert seen == ROWS, fmt
        assert size > 30_000_000, fmt  # the download is tens of megabytes ...
        assert highest - before < 10_000_000, (fmt, highest - before)  # ... the process holds a few chunks of it
