"""The event journal: a serving process appends each tracking event to a file of its own, then moves it into the store.

request → event → ``Journal.append`` (one ``write``; an ``fdatasync`` too
when CLICKTRAIL_SYNC is on) → answer; a thread of the same process then
moves the new lines into the database, many events per transaction
(``Store._move``).  An appended event is as safe as a committed SQLite row
with the same setting: it survives the process being killed, and with
sync the machine losing power.  Committing every event on its own in the
request had cost the tracker a third of its throughput with 4 workers
(BENCHMARKS.md).

Files: ``{folder}/{pid}-{random}-{n}.jsonl``, one JSON line per event (the
spool's format).  The random part is new for every journal, so a process
that reuses a dead one's pid never takes its file.  A process holds an
``flock`` on its open file for as long as it writes it, so a file that
nobody holds was left by a process that died: anyone may adopt it
(``files``), store its lines and delete it.  Every line carries its event
id and the store ignores an id it already has, so a line moved twice is
stored once.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import threading
from collections.abc import Iterator

# A file is replaced by a fresh one once this much of it has been moved.
# Small, so that a reader in another process can catch up on a live file cheaply (``Store.catch_up``).
ROTATE_BYTES = 64 << 10
# At most this much is read and stored in one transaction.
BATCH_BYTES = 1 << 20


class Journal:
    """This process's journal file: appended by request threads, read by the mover thread."""

    def __init__(self, folder: str, sync: bool) -> None:
        self.folder, self.sync, self.pid = folder, sync, os.getpid()
        self.name = f"{self.pid}-{secrets.token_hex(6)}"
        self.lock = threading.Lock()
        self._n = 0
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._start_file()

    def _start_file(self) -> None:
        self._n += 1
        path = os.path.join(self.folder, f"{self.name}-{self._n}.jsonl")
        temp = os.path.join(self.folder, f".{self.name}-{self._n}.new")
        fd = os.open(temp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.link(temp, path)  # seen under its name only once locked (never taken for an orphan); never over another
        finally:
            os.unlink(temp)
        if self.sync:  # the new name itself must survive a power loss, or so would not its events
            dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self.fd, self.path, self.size, self.moved = fd, path, 0, 0

    def append(self, line: bytes) -> None:
        """Add one event line (ending in a newline); raises OSError when the file cannot take it."""
        with self.lock:
            written = os.write(self.fd, line)
            if written != len(line):  # a full disk: take back the torn line
                os.ftruncate(self.fd, self.size)
                raise OSError(errno.ENOSPC, f"journal {self.path}: short write")
            self.size += written
            if self.sync:
                os.fdatasync(self.fd)

    def waiting(self) -> bool:
        return self.size > self.moved

    def unmoved(self) -> tuple[bytes, int]:
        """Whole lines appended and not yet moved (at most BATCH_BYTES), and the offset after them."""
        size = self.size  # only the mover reads, and only it rotates: fd and moved are stable here
        if size <= self.moved:
            return b"", self.moved
        data = os.pread(self.fd, min(size - self.moved, BATCH_BYTES), self.moved)
        data = data[: data.rfind(b"\n") + 1]
        return data, self.moved + len(data)

    def moved_to(self, offset: int) -> None:
        """Everything before ``offset`` is in the store; start a new file when this one is large and done."""
        self.moved = offset
        if self.moved < ROTATE_BYTES:
            return
        with self.lock:
            if self.size != self.moved:
                return
            old_fd, old_path = self.fd, self.path
            self._start_file()
        os.unlink(old_path)  # before the lock goes with the close: nobody adopts a file already stored
        os.close(old_fd)


def files(folder: str) -> Iterator[tuple[str, int, bool]]:
    """Every journal file, opened: (path, fd, orphan).  An orphan (no live process holds it) comes
    locked, for its adopter to store and delete; a live one is only for reading.  Close the fd when done."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # stored and deleted meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield path, fd, False  # its process is alive and writing it
            continue
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)
            continue  # deleted between the listing and the lock
        yield path, fd, True


def batches(fd: int) -> Iterator[bytes]:
    """The file behind ``fd`` as whole lines, at most about BATCH_BYTES at a time (a torn last line is left out)."""
    offset = 0
    while chunk := os.pread(fd, BATCH_BYTES, offset):
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            if len(chunk) < BATCH_BYTES:
                return  # a torn last line
            cut = len(chunk)  # one line longer than a batch: never written by us; passed on to be refused
        yield chunk[:cut]
        offset += cut
