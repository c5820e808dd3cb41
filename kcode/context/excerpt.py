"""Excerpts: the definitions of a file that matter for the task, as verbatim source.

When a top-ranked file does not fit the pack whole, the pack shows the full source of its
best definitions instead (which: :mod:`kcode.context.content`, by the BM25 of the task's
words against each definition's own words: its name, twice, its scopes' header lines, and
every word of its lines outside nested definitions, strings and comments included; a big
class is a unit of its own lines, see :func:`own_ranges`). Each comes with the header
lines of its enclosing scopes (``class Foo(Base):``) and, room permitting, the file's
top-level imports. The text is the file's own lines, unchanged, in chunks that each open with a
``⋮ lines a-b`` marker, so the model knows where they sit and can quote them to the edit
tool exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kcode.context.index import IndexedFile
from kcode.context.rank import BM25_B, BM25_K1, subwords

__all__ = ["Excerpt", "ExcerptCost", "own_words", "own_ranges", "bm25_scores", "build_excerpt", "render_excerpt", "format_ranges"]

MARK = "⋮"
_GAP_FILL = 2  # ranges this few lines apart are joined (the lines cost less than a marker)
CLASS_WHOLE_LINES = 60  # a class this short is shown whole (read as one, like a function)
IMPORT_SHARE = 0.25  # imports are shown when they take at most this share of an excerpt's room


@dataclass(frozen=True)
class Excerpt:
    path: str
    ranges: tuple[tuple[int, int], ...]  # 1-based, inclusive, sorted, disjoint
    definitions: tuple[int, ...]  # indices into the file's tags.definitions shown whole
    total_lines: int
    text: str


def format_ranges(ranges: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


def render_excerpt(path: str, lines: Sequence[str], ranges: Sequence[tuple[int, int]]) -> str:
    """``lines``: the file's lines without their newlines."""
    total = len(lines)
    parts = [f'<file path="{path}" excerpt="lines {format_ranges(ranges)} of {total}">\n']
    for a, b in ranges:
        parts.append(f"{MARK} line {a}\n" if a == b else f"{MARK} lines {a}-{b}\n")
        parts.append("".join(line + "\n" for line in lines[a - 1 : b]))
    if ranges and ranges[-1][1] < total:
        parts.append(f"{MARK}\n")
    parts.append("</file>\n")
    return "".join(parts)


def own_words(indexed: IndexedFile, lines: Sequence[str]) -> list[Counter[str]]:
    """Per definition: its name's words (×2), those of its enclosing scopes' header lines,
    and every word on its own lines (code, strings, comments) that no nested definition
    holds."""
    tags = indexed.tags
    defs = tags.definitions
    words: list[Counter[str]] = [Counter() for _ in defs]
    if not defs:
        return words
    # The innermost definition holding each line: definitions are sorted by line, and a
    # later-starting one that holds the line is nested in the earlier ones.
    total = len(lines)
    owner = [-1] * (total + 1)
    for i, d in enumerate(defs):
        for line in range(max(d.start, 1), min(d.end, total) + 1):
            owner[line] = i
    own: list[list[str]] = [[] for _ in defs]
    for line in range(1, total + 1):
        if owner[line] >= 0:
            own[owner[line]].append(lines[line - 1])
    for i, d in enumerate(defs):
        counter = words[i]
        counter.update(subwords("\n".join(own[i])))
        for word in subwords(d.name):
            counter[word] += 2
        for s in d.scopes:
            counter.update(subwords(tags.headers[s][1].split("\n", 1)[0]))
    return words


def bm25_scores(
    documents: Sequence[Counter[str]], query_words: Sequence[str], weights: Mapping[str, float] | None = None
) -> list[float]:
    """BM25 of ``query_words`` against each of ``documents`` (word counts), the IDF taken over
    ``documents`` themselves; ``weights``: extra weight of some query words (default 1)."""
    n = len(documents)
    query = set(query_words)
    scores = [0.0] * n
    if not query or n == 0:
        return scores
    lengths = [sum(w.values()) for w in documents]
    average = (sum(lengths) / n) or 1.0
    # Per document only the query words it holds, in sorted order: the float sums must not
    # depend on the hash seed (a document's words are tens, the task's hundreds).
    hits = [sorted(query.intersection(w)) for w in documents]
    df = Counter(word for held in hits for word in held)
    idf = {word: math.log(1.0 + (n - df[word] + 0.5) / (df[word] + 0.5)) * (weights or {}).get(word, 1.0) for word in df}
    for i, w in enumerate(documents):
        if not hits[i]:
            continue
        norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths[i] / average)
        score = 0.0
        for word in hits[i]:
            tf = w[word]
            score += idf[word] * tf * (BM25_K1 + 1.0) / (tf + norm)
        scores[i] = round(score, 9)
    return scores


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1 + _GAP_FILL:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


class ExcerptCost:
    """Characters of an excerpt's rendering for a set of ranges (header, markers, lines)."""

    def __init__(self, path: str, lines: Sequence[str]) -> None:
        self.prefix = [0]
        for line in lines:
            self.prefix.append(self.prefix[-1] + len(line) + 1)
        self.fixed = len(path) + 60
        self.own: list[tuple[tuple[int, int], ...] | None] | None = None  # see own_ranges, per file

    def __call__(self, ranges: Sequence[tuple[int, int]]) -> int:
        return self.fixed + sum(self.prefix[b] - self.prefix[a - 1] + 16 for a, b in ranges)


def own_ranges(indexed: IndexedFile, lines: Sequence[str]) -> list[tuple[tuple[int, int], ...] | None]:
    """Per definition: for a class that holds other definitions, the ranges of its own
    non-blank lines (header, docstring, attributes: the lines no nested definition holds),
    if it is CLASS_WHOLE_LINES long or more; None for the rest.

    A class is then a unit of its own lines, the lines its words were counted over (see
    :func:`own_words`): its methods are units of their own, so choosing a 1,000-line class
    for its docstring does not spend the room on every method in it. A function is always
    shown whole, inner functions included (the model edits it as one)."""
    defs = indexed.tags.definitions
    total = len(lines)
    owner = [-1] * (total + 1)
    for i, d in enumerate(defs):  # sorted by line: a later-starting holder is nested deeper
        for line in range(max(d.start, 1), min(d.end, total) + 1):
            owner[line] = i
    found: list[tuple[tuple[int, int], ...] | None] = [None] * len(defs)
    for i, d in enumerate(defs):
        if d.kind != "class" or d.end - d.start < CLASS_WHOLE_LINES or not any(owner[line] != i for line in range(max(d.start, 1), min(d.end, total) + 1)):
            continue
        ranges: list[tuple[int, int]] = []
        for line in range(max(d.start, 1), min(d.end, total) + 1):
            if owner[line] == i and lines[line - 1].strip():
                if ranges and ranges[-1][1] == line - 1:
                    ranges[-1] = (ranges[-1][0], line)
                else:
                    ranges.append((line, line))
        found[i] = tuple(ranges)
    return found


def build_excerpt(
    indexed: IndexedFile, lines: Sequence[str], order: Sequence[int], room: float, *, chars_per_token: float,
    cost: ExcerptCost | None = None,
) -> Excerpt | None:
    """The definitions of ``order`` (best first) that fit ``room`` tokens together, each with
    its scopes' header lines, plus the imports if they fit beside the first; None if not even
    the best definition that fits alone does. ``chars_per_token``: the caller's estimate;
    ``cost``: the file's :class:`ExcerptCost`, if the caller keeps one."""
    tags = indexed.tags
    total = len(lines)
    cost = cost or ExcerptCost(indexed.path, lines)
    if cost.own is None:
        cost.own = own_ranges(indexed, lines)
    limit = room * chars_per_token
    chosen: list[int] = []
    spans: list[tuple[int, int]] = []
    ranges: list[tuple[int, int]] = []
    imports = [(a, min(b, total)) for a, b in tags.imports if a <= total]
    for i in order:
        d = tags.definitions[i]
        start, end = max(1, d.start), min(d.end, total)
        if end < start or any(a <= start and end <= b for a, b in spans):
            continue  # shown already, inside a chosen definition
        own = cost.own[i]
        extra = [(start, end)] if own is None else list(own)
        for s in d.scopes:
            line, text = tags.headers[s]
            extra.append((line, min(total, line + text.count("\n"))))
        candidate = _merge(ranges + extra)
        if cost(candidate) > limit:
            continue
        chosen.append(i)
        if own is None:  # a class shown by its own lines does not show its methods
            spans.append((start, end))
        ranges = candidate
        if len(chosen) == 1 and imports:
            with_imports = _merge(ranges + imports)
            if cost(with_imports) - cost(ranges) <= IMPORT_SHARE * limit and cost(with_imports) <= limit:
                ranges = with_imports
    if not chosen:
        return None
    shown = tuple(sorted(chosen))
    return Excerpt(indexed.path, tuple(ranges), shown, total, render_excerpt(indexed.path, lines, ranges))
