"""Form bodies read exactly: urlencoded and multipart/form-data as (name, bytes) pairs.

Werkzeug's own form parsing turns bytes that are not UTF-8 into U+FFFD without
a word, and stops a long multipart form at 1,000 parts with a bare 413; here
every value stays the bytes that were sent (``submission.from_form`` decodes
them strictly), and a body that does not parse is a ``BadInput`` saying so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes

from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from .errors import BadInput, shown

MAX_BOUNDARY = 70  # RFC 2046
_PAIRS = re.compile(rb"[^&]+")


def urlencoded(body: bytes) -> Iterator[tuple[str, bytes]]:
    """The fields of an ``application/x-www-form-urlencoded`` body, values undecoded, one at a time."""
    # Lazily, as multipart below: a 10 MB body of "a&a&…" is refused at its first field, not after five million.
    for pair in _PAIRS.finditer(body):
        name, _, value = pair.group().partition(b"=")
        # Names are only ever compared with ours: one that is not UTF-8 is simply unknown.
        yield _unquote(name).decode("utf-8", "replace"), _unquote(value)


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def multipart(body: bytes, boundary: str | None) -> Iterator[tuple[str, bytes]]:
    """The parts of a ``multipart/form-data`` body (fields and files alike), one at a time.

    Lazily, so that the reader bounds the work: ``submission.from_form`` stops
    at the first unknown or repeated field, or at one recipient too many.
    """
    if not boundary or len(boundary) > MAX_BOUNDARY or not boundary.isascii():
        raise BadInput("the multipart/form-data body needs a boundary of 1 to 70 ASCII characters in its "
                       "Content-Type header")
    decoder = MultipartDecoder(boundary.encode("ascii"))
    decoder.receive_data(body)
    decoder.receive_data(None)
    name, chunks = "", list[bytes]()
    try:
        event = decoder.next_event()
        while not isinstance(event, Epilogue):
            if isinstance(event, NeedData):  # all of it was given: the closing boundary is missing
                raise ValueError("it ends before the closing boundary")
            if isinstance(event, Field | File):
                name, chunks = event.name, []
            elif isinstance(event, Data):
                chunks.append(event.data)
                if not event.more_data:
                    yield name, b"".join(chunks)
            event = decoder.next_event()
    except ValueError as e:
        raise BadInput(f"the multipart/form-data body does not follow the boundary {shown(boundary)} of its "
                       f"Content-Type (cut short, or another boundary): {e}") from e
