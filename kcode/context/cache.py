"""The on-disk tag cache: SQLite under ``cache_dir()/tags/``.

Two tables. ``stat`` maps (repository root, path) to the size, mtime and content digest seen
last time, so an unchanged file is recognised without reading it. ``tags`` maps a content
digest (plus grammar versions) to the extracted :class:`~kcode.context.tags.FileTags`, so a
renamed or copied file, or the same file in another clone, is not parsed again. WAL mode and
a busy timeout let several kcode processes (a swarm) share the file.
"""

from __future__ import annotations

import marshal
import sqlite3
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from kcode.context.files import SKIP_RULES
from kcode.context.languages import GRAMMAR_VERSION
from kcode.context.tags import TAGS_SCHEMA, FileTags
from kcode.context.workers import decode_tags, encode_tags

__all__ = ["TagCache", "StatRow"]

StatRow = tuple[int, int, str, str | None]  # size, mtime_ns, digest, content skip reason

# Stored tags are marshal blobs: the Python version is part of the key.
_VERSION = f"{TAGS_SCHEMA};{GRAMMAR_VERSION};py{sys.version_info[0]}.{sys.version_info[1]}"


def _stat_key(root: str) -> str:
    """A stat row holds a content verdict (skip reason): rows made under other rules are not read."""
    return f"{root}\0rules{SKIP_RULES}"


class TagCache:
    def __init__(self, path: Path | None) -> None:
        """``path=None`` keeps the cache in memory (nothing persists)."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS stat (root TEXT, path TEXT, size INTEGER, mtime_ns INTEGER,"
                " digest TEXT, skip TEXT, PRIMARY KEY (root, path))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tags (digest TEXT, language TEXT, version TEXT, data BLOB,"
                " PRIMARY KEY (digest, language, version))"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS history (root TEXT PRIMARY KEY, head TEXT, data BLOB)")

    def stat_rows(self, root: str) -> dict[str, StatRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, digest, skip FROM stat WHERE root = ?", (_stat_key(root),)
            )
            return {path: (size, mtime, digest, skip) for path, size, mtime, digest, skip in rows}

    def update_stats(self, root: str, rows: dict[str, StatRow], removed: Iterable[str]) -> None:
        key = _stat_key(root)
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?, ?)",
                [(key, path, *row) for path, row in rows.items()],
            )
            self._db.executemany("DELETE FROM stat WHERE root = ? AND path = ?", [(key, p) for p in removed])

    def get_tags(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], FileTags]:
        """Cached tags for (digest, language) pairs; missing ones are absent from the result."""
        found: dict[tuple[str, str], FileTags] = {}
        wanted = set(keys)
        digests = sorted({digest for digest, _ in keys})
        with self._lock:
            for start in range(0, len(digests), 500):
                chunk = digests[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT digest, language, data FROM tags WHERE version = ? AND digest IN ({marks})",
                    (_VERSION, *chunk),
                )
                for digest, language, data in rows:
                    if (digest, language) in wanted:
                        found[(digest, language)] = decode_tags(data)
        return found

    def put_tags(self, items: dict[tuple[str, str], FileTags]) -> None:
        self.put_blobs({key: encode_tags(tags) for key, tags in items.items()})

    def put_blobs(self, items: dict[tuple[str, str], bytes]) -> None:
        """Store tags already in their stored form (:func:`~kcode.context.workers.encode_tags`)."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)",
                [(digest, language, _VERSION, blob) for (digest, language), blob in items.items()],
            )

    def get_history(self, root: str, head: str) -> dict[str, int] | None:
        """Each path's last commit time as of ``head`` (see :mod:`kcode.context.history`)."""
        found = self.last_history(root)
        return found[1] if found is not None and found[0] == head else None

    def last_history(self, root: str) -> tuple[str, dict[str, int]] | None:
        """The HEAD last stored for ``root`` and its commit times."""
        with self._lock:
            row = self._db.execute("SELECT head, data FROM history WHERE root = ?", (root,)).fetchone()
        return (row[0], marshal.loads(row[1])) if row else None

    def put_history(self, root: str, head: str, times: dict[str, int]) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO history VALUES (?, ?, ?)", (root, head, marshal.dumps(times)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
