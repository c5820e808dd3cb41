"""The repository index: every candidate file with its tags, kept fresh cheaply.

:meth:`RepoIndex.refresh` lists the files, stats them, and reads only those whose size or
mtime changed since the last look (in this process or, through the SQLite stat table, an
earlier one). A changed file is hashed; only a digest the cache has never seen is parsed,
on a cold build by a pool of worker processes (:mod:`kcode.context.workers`). So after one
edit a refresh parses one file, and a long-lived index (the agent's) does not even touch
SQLite for the rest.

When the caller knows which files changed (the agent's checkpoints report them),
``refresh(changed=[...])`` looks at those paths only: no ``git ls-files``, no stat of the
other files. Its result is the same as a full refresh's as long as nothing else changed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kcode.context.cache import StatRow, TagCache
from kcode.context.files import filter_candidates, list_candidates, skip_reason_for_content, skip_reason_for_path
from kcode.context.languages import language_for
from kcode.context.tags import FileTags
from kcode.context.workers import parse_sources

__all__ = ["RepoIndex", "IndexedFile", "RefreshStats", "default_cache_path"]

_PLAIN = FileTags(None, 0)
_FREEZE_AFTER = 500  # files' tags loaded at once, after which gc.freeze() is called


def default_cache_path() -> Path:
    from kcode.paths import cache_dir

    return cache_dir() / "tags" / "tags.sqlite"


@dataclass
class IndexedFile:
    path: str  # repo-relative, POSIX
    size: int
    language: str | None
    tags: FileTags


@dataclass
class RefreshStats:
    files: int = 0  # paths looked at: every candidate, or only the changed ones
    read: int = 0  # files whose bytes were read (new or changed stat)
    parsed: int = 0  # files run through tree-sitter
    workers: int = 1  # processes that parsed them
    seconds: float = 0.0
    full: bool = True  # False: only the paths given to refresh(changed=...) were looked at


@dataclass
class RepoIndex:
    root: Path
    cache: TagCache
    files: dict[str, IndexedFile] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    from_git: bool = False
    workers: int | None = None  # parsing processes on cold builds; None: one per CPU
    last: RefreshStats = field(default_factory=RefreshStats)
    _stats: dict[str, StatRow] | None = None
    _scanned: bool = False  # a full refresh has run: partial ones may follow
    _version: int = 0  # bumped whenever the file set or any file's tags change
    _files_version: int = 0  # bumped whenever the set of paths changes
    _path_verdicts: dict[tuple[str, int], tuple[str | None, str | None]] = field(default_factory=dict)

    @classmethod
    def open(
        cls, root: Path, cache_path: Path | None = None, *, persist: bool = True, workers: int | None = None
    ) -> RepoIndex:
        root = Path(root).resolve()
        cache = TagCache((cache_path or default_cache_path()) if persist else None)
        return cls(root, cache, workers=workers)

    @property
    def version(self) -> int:
        return self._version

    @property
    def files_version(self) -> int:
        return self._files_version

    def refresh(self, changed: Iterable[str | Path] | None = None) -> RefreshStats:
        """Bring the index up to date; with ``changed``, look only at those paths (edited,
        created or deleted; repo-relative or absolute). The first refresh is always full."""
        started = time.perf_counter()
        if self._stats is None:
            self._stats = self.cache.stat_rows(str(self.root))
        if changed is None or not self._scanned:
            names, self.from_git = list_candidates(self.root)
            stats = self._update(names, full=True)
            self._scanned = True
        else:
            paths = sorted({p for p in map(self._relative, changed) if p is not None})
            known = [p for p in paths if p in self.files or p in self.skipped]
            unknown = [p for p in paths if p not in self.files and p not in self.skipped]
            new = filter_candidates(self.root, unknown, self.from_git) if unknown else []
            stats = self._update(sorted(known + new), full=False, gone=set(unknown) - set(new))
        stats.seconds = time.perf_counter() - started
        self.last = stats
        return stats

    def _relative(self, path: str | Path) -> str | None:
        p = Path(path)
        if p.is_absolute():
            try:
                return p.resolve().relative_to(self.root).as_posix()
            except ValueError:
                return None  # outside the repository
        return p.as_posix().removeprefix("./")

    def _update(self, names: list[str], *, full: bool, gone: Iterable[str] = ()) -> RefreshStats:
        """Look at ``names``: all candidates (``full``) or some of them (the rest are kept)."""
        assert self._stats is not None
        stats = RefreshStats(files=len(names), full=full)
        changed_rows: dict[str, StatRow] = {}
        need_tags: dict[str, tuple[str, str]] = {}  # path -> (digest, language)
        sources: dict[str, bytes] = {}
        if full:
            files: dict[str, IndexedFile] = {}
            skipped: dict[str, str] = {}
        else:
            files, skipped = dict(self.files), dict(self.skipped)
            for name in (*names, *gone):
                files.pop(name, None)
                skipped.pop(name, None)
        changed = False
        present: set[str] = set()
        top = str(self.root) + os.sep
        for name in names:
            try:
                st = os.lstat(top + name)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):  # symlinks, submodules
                continue
            present.add(name)
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
                    with open(top + name, "rb") as handle:
                        data = handle.read()
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
            self._load_tags(need_tags, sources, files, stats)
        removed = sorted((set(self._stats) - present) if full else (set(names) | set(gone)) - present)
        for name in removed:
            self._stats.pop(name, None)
        if changed_rows or removed:
            self.cache.update_stats(str(self.root), changed_rows, removed)
        if set(files) != set(self.files):
            self._files_version += 1
            changed = True
        if changed:
            self._version += 1
        self.files = dict(sorted(files.items()))
        self.skipped = dict(sorted(skipped.items()))
        return stats

    def _load_tags(self, need_tags, sources, files, stats: RefreshStats) -> None:
        """Tags for ``need_tags`` from the cache, parsing (in worker processes when there are
        many) only digests it has never seen; stores what was parsed."""
        assert self._stats is not None
        cached = self.cache.get_tags(sorted(set(need_tags.values())))
        missing: dict[tuple[str, str], str] = {}  # key -> a path with that content
        for name, key in need_tags.items():
            if key not in cached and key not in missing:
                missing[key] = name
        fresh: dict[tuple[str, str], FileTags] = {}
        if missing:
            jobs = []
            for key, name in missing.items():
                data = sources.get(name)
                if data is None:
                    data = (self.root / name).read_bytes()
                jobs.append((data, key[1]))
            parsed, blobs, stats.workers = parse_sources(jobs, self.workers)
            fresh = dict(zip(missing, parsed))
            stats.parsed = len(missing)
            self.cache.put_blobs(dict(zip(missing, blobs)))
        for name, key in need_tags.items():
            files[name] = IndexedFile(name, self._stats[name][0], key[1], cached.get(key) or fresh[key])
        if len(need_tags) >= _FREEZE_AFTER:
            # Millions of long-lived tag objects: without this every full collection walks them
            # all (~80 ms on Django, an outlier in the agent's re-packs). Frozen objects are
            # still freed by reference counting when a file's tags are replaced.
            gc.freeze()

    def read_text(self, path: str) -> str:
        return (self.root / path).read_bytes().decode("utf-8", "replace")

    def close(self) -> None:
        self.cache.close()
