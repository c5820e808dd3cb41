"""Following a session's event log while another process writes it.

:class:`EventTail` reads ``events.jsonl`` from the start (the catch-up), then whatever is
appended (the follow). It reads only complete lines: a last line still being written stays
in a buffer until its newline comes. Every line carries ``seq``, its 1-based line number
(:mod:`kcode.session.log`; a line without one, from an older kcode, is numbered by
counting), and a tail never yields a seq twice: if the file is replaced (another inode) or
shrinks, it is read again from the start and what was already yielded is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from kcode.events import Event, event_from_dict
from kcode.session.versions import LineUpgrader

__all__ = ["EventTail"]

log = logging.getLogger(__name__)


class EventTail:
    """The events of the log at ``path`` as ``(seq, event)`` pairs, in order, each once.

    :meth:`poll` returns what is there now (it never blocks); :meth:`follow` keeps polling
    until ``stop`` is set. ``after``: skip events up to this seq (a reader that already has
    them). A log that does not exist yet is waited for."""

    def __init__(self, path: Path, *, after: int = 0) -> None:
        self.path = Path(path)
        self.seq = after  # the last seq yielded
        self._handle: IO[bytes] | None = None
        self._inode: int | None = None
        self._buffer = b""  # the start of a line still being written
        self._lines_ready: deque[bytes] = deque()  # complete lines read, not parsed yet
        self._lines = 0  # complete lines parsed from the current file
        self._upgrade = LineUpgrader(str(path))

    def poll(self, limit: int | None = None) -> list[tuple[int, Event]]:
        """The events appended since the last call (at most ``limit``)."""
        if not self._open():
            return []
        out: list[tuple[int, Event]] = []
        while limit is None or len(out) < limit:
            if not self._lines_ready:
                chunk = self._handle.read(1 << 20)
                if not chunk:
                    break
                *complete, self._buffer = (self._buffer + chunk).split(b"\n")
                self._lines_ready.extend(complete)
                continue
            line = self._lines_ready.popleft()
            self._lines += 1
            item = self._parse(line)
            if item is not None and item[0] > self.seq:
                self.seq = item[0]
                out.append(item)
        return out

    def follow(self, stop: threading.Event, interval: float = 0.05) -> Iterator[tuple[int, Event]]:
        """Every event, as it comes, until ``stop`` is set."""
        while not stop.is_set():
            batch = self.poll(limit=1000)
            yield from batch
            if not batch:
                stop.wait(interval)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # -- internals ------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open the log (again, if it was replaced or cut); False while there is none."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return self._handle is not None
        replaced = self._inode is not None and status.st_ino != self._inode
        shrunk = self._handle is not None and status.st_size < self._handle.tell()
        if self._handle is not None and not (replaced or shrunk):
            return True
        if self._handle is not None:
            log.warning("%s was %s; reading it again from the start", self.path, "replaced" if replaced else "cut")
            self._handle.close()
        self._handle = self.path.open("rb")
        self._inode = os.fstat(self._handle.fileno()).st_ino
        self._buffer, self._lines = b"", 0
        self._lines_ready.clear()
        self._upgrade = LineUpgrader(str(self.path))
        return True

    def _parse(self, line: bytes) -> tuple[int, Event] | None:
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s:%d: skipping an unreadable line", self.path, self._lines)
            return None
        if not isinstance(data, dict):
            return None
        seq = data.get("seq")
        seq = seq if isinstance(seq, int) else self._lines
        try:
            return seq, event_from_dict(self._upgrade(data))
        except (ValueError, TypeError) as error:
            log.warning("%s:%d: skipping event: %s", self.path, self._lines, error)
            return None
