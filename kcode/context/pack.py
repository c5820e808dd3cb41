"""Pack a repository into a token budget: whole when it fits, else map + top files.

Searching uses character-based estimates calibrated against the caller's exact token
counter; the final text is always counted exactly and never exceeds the budget. A
:class:`Packer` keeps the index and the ranker warm between packs (the agent re-packs at
compaction; the ``repo_map`` tool shares the index); :func:`build_pack` keeps one per
repository in the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kcode.context.content import CONTENT_SHARE, MIN_ROOM, NO_TASK_CONTENT_SHARE, Content, choose_content, content_units
from kcode.context.excerpt import Excerpt, format_ranges
from kcode.context.history import NEWEST, TRUNCATED, commit_times, read_head
from kcode.context.layout import CORE_CHARS_PER_TOKEN, render_sequence, render_tail
from kcode.context.index import RefreshStats, RepoIndex
from kcode.context.rank import Ranker, Ranking
from kcode.context.seeds import PathIndex, quoted_matches, quoted_spans, seeds_from_task
from kcode.context.render import MapCost, render_file
from kcode.errors import UsageError

__all__ = ["Pack", "Packer", "build_pack", "default_budget", "get_packer", "MODES"]

MODES = ("auto", "map", "full", "none")
FILL = 0.98  # a pack that does not hold everything fills at least this share of the budget
_MAX_EXACT_COUNTS = 12

CountTokens = Callable[[str], int]


def default_budget(context_window: int, share: float, reserve: int | None = None) -> int:
    """The pack's share of the window, leaving at least ``reserve`` (default: 32K tokens, or
    half of a smaller window) for the conversation and the output."""
    if reserve is None:
        reserve = min(32_768, context_window // 2)
    return max(0, min(int(context_window * share), context_window - reserve))


@dataclass
class _Result:
    text: str
    fitter: _Fitter
    whole: list[str] = field(default_factory=list)
    excerpts: dict[str, Excerpt] = field(default_factory=dict)
    mapped: list[str] = field(default_factory=list)
    mode_used: str = "auto"


@dataclass
class Pack:
    text: str
    stats: dict[str, Any] = field(default_factory=dict)


def _estimate(chars: int) -> float:
    return chars / 4.0


class _Fitter:
    """Find the largest prefix ``n`` whose rendering fits the budget, counting exactly rarely."""

    def __init__(self, count_tokens: CountTokens, budget: int) -> None:
        self.count_tokens = count_tokens
        self.budget = budget
        self.ratio = 1.0  # exact tokens per estimated token, learned from exact counts
        self.exact_counts = 0

    def count(self, text: str) -> int:
        self.exact_counts += 1
        return self.count_tokens(text)

    def fit(self, chars: list[int], render: Callable[[int], str]) -> tuple[int, str, int]:
        """``chars[n]``: estimated length of ``render(n)``, nondecreasing; ``render(0)`` must fit."""
        lo, hi = 0, len(chars) - 1  # lo fits (exactly counted); hi may not
        best = render(0)
        best_tokens = self.count(best)
        if best_tokens > self.budget:
            return 0, best, best_tokens
        upper = hi
        while lo < upper and self.exact_counts < _MAX_EXACT_COUNTS:
            target = self.budget * (FILL + 1.0) / 2 / self.ratio  # aim for the middle of the band
            n = self._largest(chars, lo + 1, upper, target)
            text = render(n)
            tokens = self.count(text)
            if chars[n] > 0:
                self.ratio = max(tokens / _estimate(chars[n]), 1e-3)
            if tokens <= self.budget:
                lo, best, best_tokens = n, text, tokens
                if tokens >= FILL * self.budget or n == upper:
                    break
            else:
                upper = n - 1
        return lo, best, best_tokens

    @staticmethod
    def _largest(chars: list[int], lo: int, hi: int, target: float) -> int:
        """The largest n in [lo, hi] with estimate(chars[n]) <= target (at least lo)."""
        a, b = lo, hi
        while a < b:
            mid = (a + b + 1) // 2
            if _estimate(chars[mid]) <= target:
                a = mid
            else:
                b = mid - 1
        return a


class Packer:
    def __init__(
        self, root: Path, *, cache_path: Path | None = None, persist: bool = True, workers: int | None = None
    ) -> None:
        """``workers``: processes parsing on cold builds (None: one per CPU; 1: this one)."""
        self.index = RepoIndex.open(root, cache_path, persist=persist, workers=workers)
        self.ranker = Ranker()
        self.lock = threading.Lock()
        self._paths: tuple[int, PathIndex] | None = None  # per set of indexed paths
        self._times: tuple[str, dict[str, int]] | None = None  # HEAD and each path's last commit time
        self._file_cache: dict[str, tuple] = {}  # per excerpted file content (see choose_content)

    def refresh(self, changed: Sequence[str | Path] | None = None) -> RefreshStats:
        """Update the index: every file, or only ``changed`` ones (see :meth:`RepoIndex.refresh`)."""
        with self.lock:
            return self.index.refresh(changed)

    def rank(
        self, task: str, focus_files: Sequence[str] = (), failing_files: Sequence[str] = ()
    ) -> Ranking:
        files = self.index.files
        if self._paths is None or self._paths[0] != self.index.files_version:  # the path set moved
            self._paths = (self.index.files_version, PathIndex(files))
        seeds = seeds_from_task(
            task,
            files,
            self.ranker.definers(files, self.index.version),
            self._paths[1],
            focus_files=[self._relative(f) for f in focus_files],
            failing_files=[self._relative(f) for f in failing_files],
        )
        spans = quoted_spans(task)
        if spans:  # one pass over the files' text (tens of ms for a thousand files)
            seeds.quoted = quoted_matches(spans, self._texts(sorted(files)))
        return self.ranker.rank(files, seeds, self.index.version)

    def _texts(self, paths: Sequence[str]):
        for path in paths:
            try:
                yield path, self.index.read_text(path)
            except OSError:  # gone since the refresh: the next pack's refresh drops it
                continue

    def _relative(self, path: str | Path) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.index.root)
            except ValueError:
                return str(path)
        return p.as_posix()

    def pack(
        self,
        *,
        task: str,
        count_tokens: CountTokens,
        budget: int,
        mode: str = "auto",
        focus_files: Sequence[str] = (),
        failing_files: Sequence[str] = (),
        tokenizer: str = "model",
        changed_files: Sequence[str | Path] | None = None,
    ) -> Pack:
        """See :func:`build_pack`."""
        if mode not in MODES:
            raise UsageError(f"unknown pack mode {mode!r} (use one of {', '.join(MODES)})")
        with self.lock:
            refreshed = self.index.refresh(changed_files)
            started = time.perf_counter()
            ranking = self.rank(task, focus_files, failing_files)
            ranked = time.perf_counter()
            result = self._pack(ranking, count_tokens, budget, mode)
            text, fitter, whole, mapped = result.text, result.fitter, result.whole, result.mapped
            tokens = fitter.count(text) if text else 0
            finished = time.perf_counter()
        files = self.index.files
        stats = {
            "tokens": tokens,
            "budget": budget,
            "tokenizer": tokenizer,
            "mode": mode,
            "mode_used": result.mode_used,
            "files_total": len(files),
            "files_whole": sorted(whole),
            "files_excerpted": {p: format_ranges(e.ranges) for p, e in sorted(result.excerpts.items())},
            "files_in_map": sorted(mapped),
            "files_left_out": len(files) - len(set(whole) | set(result.excerpts) | set(mapped)),
            "files_skipped": dict(self.index.skipped),
            "files_parsed": refreshed.parsed,
            "files_read": refreshed.read,
            "parse_workers": refreshed.workers,
            "refresh": "full" if refreshed.full else "changed files",
            "exact_counts": fitter.exact_counts,
            "seconds": {
                "parse": round(refreshed.seconds, 4),
                "rank": round(ranked - started, 4),
                "pack": round(finished - ranked, 4),
            },
        }
        return Pack(text, stats)

    def _pack(self, ranking: Ranking, count_tokens: CountTokens, budget: int, mode: str) -> _Result:
        fitter = _Fitter(count_tokens, budget)
        files = self.index.files
        if mode == "none" or budget <= 0 or not files:
            return _Result("", fitter, mode_used="none")
        texts: dict[str, str] = {}

        def text_of(path: str) -> str:
            if path not in texts:
                texts[path] = self.index.read_text(path)
            return texts[path]

        def whole_of(path: str) -> str:
            return render_file(path, text_of(path))

        key = self._layout_key()
        if mode in ("auto", "full"):
            # The whole repository, if it fits.
            total_chars = sum(indexed.size + len(path) + 20 for path, indexed in files.items())
            if _estimate(total_chars) * 0.8 <= budget:
                text = "".join(whole_of(path) for path in sorted(files, key=key))
                if fitter.count(text) <= budget:
                    return _Result(text, fitter, whole=list(files), mode_used="full")
        if mode == "full":
            whole = self._greedy_whole(ranking.files, whole_of, set(), budget, fitter, key)
            return _Result("".join(whole_of(p) for p in sorted(whole, key=key)), fitter, whole=whole, mode_used="full")
        if mode == "map":
            text, mapped, _ = self._fit_map(ranking, Content(), budget, fitter, key)
            return _Result(text, fitter, mapped=mapped, mode_used="map")
        # auto: the best files whole or as excerpts within a share of the budget, the map in the rest.
        seeds = ranking.seeds
        task_known = bool(seeds.words or seeds.identifiers or seeds.paths or seeds.focus)
        allowance = budget * (CONTENT_SHARE if task_known else NO_TASK_CONTENT_SHARE)
        definers = self.ranker.definers(files, self.index.version)
        if len(self._file_cache) > 512:
            self._file_cache.clear()
        units = content_units(ranking, files, text_of, definers, self._file_cache, allowance)
        for _ in range(4):
            content = choose_content(
                ranking, files, allowance, fitter.ratio, text_of, whole_of, _estimate, definers, self._file_cache, units
            )
            text, mapped, tokens = self._fit_map(ranking, content, budget, fitter, key)
            if tokens > budget and content.blocks:  # the estimates were low: learn, shrink, retry
                fitter.ratio = max(tokens / max(_estimate(len(text)), 1.0), fitter.ratio)
                allowance = min(allowance, content.tokens) * 0.9 * budget / tokens
                continue
            shown = content.shown()
            if len(shown | set(mapped)) < len(files) or fitter.ratio * _estimate(len(text)) >= FILL * budget:
                break
            # The map holds everything and room is left: offer it to the files.
            room = budget - fitter.ratio * _estimate(len(text))
            if room < MIN_ROOM:
                break
            allowance = content.tokens + room
        return _Result(text, fitter, whole=content.whole, excerpts=content.excerpts, mapped=mapped, mode_used="auto")

    def _layout_key(self) -> Callable[[str], tuple[int, str]]:
        """Files that changed least come first: by last commit time, then path (a prompt
        prefix cached by its KV state is then mostly restored after a commit)."""
        head = read_head(self.index.root)
        if head is None:
            times: dict[str, int] = {}
        elif self._times is not None and self._times[0] == head:
            times = self._times[1]
        else:
            times = self.index.cache.get_history(str(self.index.root), head)
            if times is None:
                previous = self._times or self.index.cache.last_history(str(self.index.root))
                times = commit_times(self.index.root, head, previous)
                self.index.cache.put_history(str(self.index.root), head, times)
            self._times = (head, times)
        unseen = 0 if TRUNCATED in times else NEWEST  # beyond a truncated history: old; else untracked
        return lambda path: (times.get(path, unseen), path)

    def _greedy_whole(self, ranked, whole_of, already: set[str], allowance: int, fitter, key):
        """``full`` mode: top-ranked files whose estimated sizes fit ``allowance`` together,
        trimmed exactly so the final text fits."""
        chosen = sorted(already)
        used = sum(fitter.ratio * _estimate(len(whole_of(p))) for p in chosen)
        for path in ranked:
            if path in already:
                continue
            size = fitter.ratio * _estimate(self.index.files[path].size + len(path) + 20)
            if used + size <= allowance:
                chosen.append(path)
                used += size
        while chosen and fitter.count("".join(whole_of(p) for p in sorted(chosen, key=key))) > fitter.budget:
            chosen.pop()
        return chosen

    def _fit_map(self, ranking: Ranking, content: Content, budget: int, fitter: _Fitter, key):
        """The pack: ``content``'s blocks (by ``key``) and the map of the best-ranked units
        (file listings and definitions) not shown in them, as many as fit."""
        files = self.index.files
        paths = ranking.paths
        position = {p: i for i, p in enumerate(paths)}
        file_score = np.array([ranking.file_scores[p] for p in paths])
        # Units: every file (index -1) and every definition, outside the whole files.
        score = np.concatenate([file_score, ranking.def_score])
        unit_file = np.concatenate([np.arange(len(paths)), ranking.def_file])
        unit_index = np.concatenate([np.full(len(paths), -1), ranking.def_index])
        if content.whole or content.hidden:
            keep = ~np.isin(unit_file, [position[path] for path in content.whole])
            for path, hidden in content.hidden.items():
                keep &= ~((unit_file == position[path]) & np.isin(unit_index, sorted(hidden)))
            score, unit_file, unit_index = score[keep], unit_file[keep], unit_index[keep]
        # Only as many units as could fit are costed (estimates are per character): 1.5 times
        # the budget's estimated length, more only if all of those fit and room is left.
        limit_chars = int(4 * budget * _MAP_SLACK / max(fitter.ratio, 0.25)) + 1
        base = sum(len(block) for block in content.blocks.values())
        ordered: list[tuple[str, int]] = []
        chars = [base]
        cost = MapCost(files)
        chunks = _best_first(score, unit_file, unit_index, _MAP_CHUNK)

        def cost_until(limit: int) -> bool:
            """Cost units until their map would be longer than ``limit``; False if none are left."""
            for chunk in chunks:
                units = [(paths[f], j) for f, j in zip(unit_file[chunk].tolist(), unit_index[chunk].tolist())]
                ordered.extend(units)
                chars.extend(base + c for c in cost.extend(units))
                if chars[-1] > limit:
                    return True
            return False

        def selection(units: list[tuple[str, int]]) -> dict[str, set[int]]:
            selected: dict[str, set[int]] = {}
            for path, j in units:
                chosen = selected.setdefault(path, set())
                if j >= 0:
                    chosen.add(j)
            return selected

        # The core of the map: the units that fit a conservative share of the room left by
        # the content's coarse cost (stable under small edits); the tail fills the rest.
        core_chars = max(0.0, budget - content.tokens) * CORE_CHARS_PER_TOKEN * FILL
        left = cost_until(limit_chars)
        while left and chars[-1] - base <= core_chars:
            limit_chars *= 2
            left = cost_until(limit_chars)
        core = 0
        while core < len(ordered) and chars[core + 1] - base <= core_chars:
            core += 1
        for _ in range(2):
            sequence = render_sequence(files, content.blocks, selection(ordered[:core]), key)

            def render(m: int, sequence: str = sequence, core: int = core) -> str:
                return sequence + render_tail(files, selection(ordered[core : core + m]))

            while True:
                tail_chars = [len(sequence) + c - chars[core] for c in chars[core:]]
                m, text, tokens = fitter.fit(tail_chars, render)
                if not left or core + m < len(ordered) or tokens >= FILL * budget:
                    break
                limit_chars *= 2
                left = cost_until(limit_chars)
            if tokens <= budget or core == 0:
                break
            core = 0  # the core alone is over the budget (a tokenizer far denser than the guess)
        n = core + m
        mapped = sorted({path for path, _ in ordered[:n]} - set(content.whole))
        return text, mapped, tokens


_MAP_SLACK = 1.5  # units costed at first: their map's estimated length over the budget's
_MAP_CHUNK = 1024  # units costed at a time


def _best_first(score: np.ndarray, unit_file: np.ndarray, unit_index: np.ndarray, step: int):
    """Unit indices by (-score, file, index), ``step`` at a time.

    The map uses the first few thousand units of tens of thousands, so only the units scoring
    at least the 4096th best are sorted at first (ties included, so this is exactly the
    beginning of the full order); the rest are sorted only if the caller reads that far."""
    n = len(score)
    first = 4096
    head = np.zeros(0, dtype=np.int64)
    if n > first:
        threshold = np.partition(score, n - first)[n - first]
        head = np.flatnonzero(score >= threshold)
        head = head[np.lexsort((unit_index[head], unit_file[head], -score[head]))]
        for start in range(0, len(head), step):
            yield head[start : start + step]
        if len(head) == n:
            return
    order = np.lexsort((unit_index, unit_file, -score))
    for start in range(len(head), n, step):
        yield order[start : start + step]


_packers: dict[tuple[str, str | None, bool], Packer] = {}
_packers_lock = threading.Lock()


def get_packer(root: Path, *, cache_path: Path | None = None, persist: bool = True) -> Packer:
    """The process-wide :class:`Packer` for ``root`` (so repeated packs and lookups are warm)."""
    key = (str(Path(root).resolve()), str(cache_path) if cache_path else None, persist)
    with _packers_lock:
        packer = _packers.get(key)
        if packer is None:
            packer = _packers[key] = Packer(Path(root), cache_path=cache_path, persist=persist)
        return packer


def build_pack(
    root: Path,
    *,
    task: str,
    count_tokens: CountTokens,
    budget: int,
    mode: str = "auto",
    focus_files: Sequence[str] = (),
    failing_files: Sequence[str] = (),
    cache_path: Path | None = None,
    tokenizer: str = "model",
    changed_files: Sequence[str | Path] | None = None,
) -> Pack:
    """Pack the repository at ``root`` for ``task`` into at most ``budget`` tokens.

    ``count_tokens`` is the active model's tokenizer; ``focus_files`` are files the agent has
    read or edited, ``failing_files`` files named by failing tests (repo-relative or
    absolute). ``mode``: ``auto`` (whole repo if it fits, else map + top files), ``map``,
    ``full`` (whole files only, best-ranked first) or ``none``.

    ``changed_files``: when the caller knows which files changed since the last pack of this
    repository in this process (edited, created or deleted; the agent's checkpoints report
    them), only those are looked at: no listing of the repository, no stat of the rest. The
    result is the same as without it provided nothing else changed. ``None`` (the default)
    checks every file, as does the first pack of a repository in a process.
    """
    packer = get_packer(root, cache_path=cache_path)
    return packer.pack(
        task=task,
        count_tokens=count_tokens,
        budget=budget,
        mode=mode,
        focus_files=focus_files,
        failing_files=failing_files,
        tokenizer=tokenizer,
        changed_files=changed_files,
    )
