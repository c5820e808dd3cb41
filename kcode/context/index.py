"""The repository index: every candidate file with its tags, kept fresh cheaply.

:meth:`RepoIndex.refresh` lists the files, stats them, and reads only those whose size or
mtime changed since the last look (in this process or, through the SQLite stat table, an
earlier one). A changed file is hashed; only a digest the cache has never seen is parsed.
So after one edit a refresh parses one file, and a long-lived index (the agent's) does not
even touch SQLite for the rest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from kcode.context.cache import StatRow, TagCache
from kcode.context.files import list_candidates, skip_reason_for_content, skip_reason_for_path
from kcode.context.languages import language_for
from kcode.context.tags import FileTags, extract_tags

__all__ = ["RepoIndex", "IndexedFile", "default_cache_path"]

_PLAIN = FileTags(None, 0)


def default_cache_path() -> Path:
    from kcode.config import cache_dir

    return cache_dir() / "tags" / "tags.sqlite"


@dataclass
class IndexedFile:
    path: str  # repo-relative, POSIX
    size: int
    language: str | None
    tags: FileTags


@dataclass
class RefreshStats:
    files: int = 0
    read: int = 0  # files whose bytes were read (new or changed stat)
    parsed: int = 0  # files run through tree-sitter
    seconds: float = 0.0


@dataclass
class RepoIndex:
    root: Path
    cache: TagCache
    files: dict[str, IndexedFile] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    from_git: bool = False
    last: RefreshStats = field(default_factory=RefreshStats)
    _stats: dict[str, StatRow] | None = None
    _version: int = 0  # bumped whenever the file set or any file's tags change
    _path_verdicts: dict[tuple[str, int], tuple[str | None, str | None]] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path, cache_path: Path | None = None, *, persist: bool = True) -> RepoIndex:
        root = Path(root).resolve()
        cache = TagCache((cache_path or default_cache_path()) if persist else None)
        return cls(root, cache)

    @property
    def version(self) -> int:
        return self._version

    def refresh(self) -> RefreshStats:
        started = time.perf_counter()
        root_key = str(self.root)
        if self._stats is None:
            self._stats = self.cache.stat_rows(root_key)
        names, self.from_git = list_candidates(self.root)
        stats = RefreshStats(files=len(names))
        changed_rows: dict[str, StatRow] = {}
        need_tags: dict[str, tuple[str, str]] = {}  # path -> (digest, language)
        sources: dict[str, bytes] = {}
        files: dict[str, IndexedFile] = {}
        skipped: dict[str, str] = {}
        changed = False
        top = str(self.root) + os.sep
        for name in names:
            try:
                st = os.lstat(top + name)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):  # symlinks, submodules
                continue
            verdict = self._path_verdicts.get((name, st.st_size))
            if verdict is None:  # (path skip reason, language), remembered per path and size
                verdict = self._path_verdicts[(name, st.st_size)] = (
                    skip_reason_for_path(name, st.st_size),
                    language_for(name),
                )
            reason, language = verdict
            if reason is not None:
                skipped[name] = reason
                continue
            row = self._stats.get(name)
            if row is None or row[0] != st.st_size or row[1] != st.st_mtime_ns:
                try:
                    data = (self.root / name).read_bytes()
                except OSError:
                    continue
                stats.read += 1
                digest = hashlib.blake2b(data, digest_size=16).hexdigest()
                row = (st.st_size, st.st_mtime_ns, digest, skip_reason_for_content(data))
                changed_rows[name] = row
                self._stats[name] = row
                sources[name] = data
            if row[3] is not None:
                skipped[name] = row[3]
                continue
            old = self.files.get(name)
            if old is not None and old.size == row[0] and name not in changed_rows and old.language == language:
                files[name] = old
                continue
            changed = True
            if language is None:
                files[name] = IndexedFile(name, row[0], None, _PLAIN)
            else:
                need_tags[name] = (row[2], language)
        if need_tags:
            cached = self.cache.get_tags(sorted(set(need_tags.values())))
            fresh: dict[tuple[str, str], FileTags] = {}
            for name, key in need_tags.items():
                tags = cached.get(key) or fresh.get(key)
                if tags is None:
                    data = sources.get(name)
                    if data is None:
                        data = (self.root / name).read_bytes()
                    tags = fresh[key] = extract_tags(data, key[1])
                    stats.parsed += 1
                files[name] = IndexedFile(name, self._stats[name][0], key[1], tags)
            if fresh:
                self.cache.put_tags(fresh)
        removed = sorted(set(self._stats) - set(names))
        for name in removed:
            del self._stats[name]
        if changed_rows or removed:
            self.cache.update_stats(root_key, changed_rows, removed)
        if changed or set(files) != set(self.files):
            self._version += 1
        self.files = dict(sorted(files.items()))
        self.skipped = dict(sorted(skipped.items()))
        stats.seconds = time.perf_counter() - started
        self.last = stats
        return stats

    def read_text(self, path: str) -> str:
        return (self.root / path).read_bytes().decode("utf-8", "replace")

    def close(self) -> None:
        self.cache.close()
