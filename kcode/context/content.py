"""What of the top-ranked files the pack shows as source: whole files and excerpts.

The pack shows the source of the best-ranked files within a share of the budget. Its units
are whole files and single definitions, taken best first. A definition's worth adds two
harmonic priors over two orders of the definitions of the POOL best-ranked files:

- file then definition: the k-th best definition of the file ranked r is worth
  r^-1 · k^-0.6 (its file's own order, :func:`definition_order`), as the chance that it is
  the code the task is about falls off both down the ranking and down a file's definitions;
- definition-level retrieval: the g-th best definition of the whole pool by BM25 of the
  task's words against each definition's own words (its name, its scopes' headers, its
  lines, strings and comments included; the IDF over the pool) is worth g^-1 more. So the
  function that raises the error a report quotes in plain words comes first even deep in
  a 5,000-line module, or in a file the ranking put 30th.

A file whose whole text is cheap next to the room left is shown whole at its first turn
instead, if it is among the first :data:`CANDIDATES`; from further down only excerpts. A
unit that does not fit is passed over. Test files count as TEST_DEMOTION times their rank,
and room left over goes to the map, never to small files further down the ranking.
Generated and metadata files never get here (the index leaves them out).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kcode.context.excerpt import Excerpt, ExcerptCost, bm25_scores, build_excerpt, definition_order, own_words
from kcode.context.index import IndexedFile
from kcode.context.layout import quantize
from kcode.context.rank import Ranking

__all__ = ["Content", "Units", "choose_content", "content_units", "CONTENT_SHARE", "NO_TASK_CONTENT_SHARE", "WHOLE_SHARE", "MIN_ROOM", "CANDIDATES"]

CONTENT_SHARE = 0.8  # in "auto", the share of the budget offered to whole files and excerpts
# Without a task nothing says which bodies matter: the map's outline of the whole repository
# gets most of the budget (and, coming first, is most of a cached prefix that a commit to a
# shown file leaves intact).
NO_TASK_CONTENT_SHARE = 0.25
WHOLE_SHARE = 0.6  # a file is shown whole when that costs at most this share of the room left
UNIT_SHARE = 0.5  # nor a definition more than this share (except the very first unit)
MIN_ROOM = 100  # tokens: less room left than this ends the choice
CANDIDATES = 20  # files that may be shown whole, from the top of the ranking
POOL = 40  # files whose definitions take part (as excerpts), from the top of the ranking
LEXICAL_DECAY = 1.0  # the g-th definition of the pool's lexical order is worth g ** -LEXICAL_DECAY more
MAX_UNITS = 3000  # units tried, best first
TEST_DEMOTION = 3  # a test file's rank counts this many times (see source_first)
FILE_DECAY, DEFINITION_DECAY = 1.0, 0.6  # a unit's worth: rank ** -FILE_DECAY * k ** -DEFINITION_DECAY


# The pool's units best first, (path, rank, definition index; -1: a file without
# definitions), and the lines and excerpt cost table of each file with definitions.
Units = tuple[list[tuple[str, int, int]], dict[str, list[str]], dict[str, ExcerptCost]]


@dataclass
class Content:
    whole: list[str] = field(default_factory=list)  # in the order they were chosen
    excerpts: dict[str, Excerpt] = field(default_factory=dict)
    hidden: dict[str, set[int]] = field(default_factory=dict)  # per excerpt: definitions it shows whole
    blocks: dict[str, str] = field(default_factory=dict)  # path -> rendered text
    tokens: float = 0.0  # estimated

    def shown(self) -> set[str]:
        return set(self.blocks)


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def choose_content(
    ranking: Ranking,
    files: dict[str, IndexedFile],
    allowance: float,
    ratio: float,
    text_of: Callable[[str], str],
    render_whole: Callable[[str], str],
    estimate: Callable[[int], float],
    definers: Mapping[str, int] | None = None,
    file_cache: dict[str, tuple] | None = None,
    units: Units | None = None,
) -> Content:
    """Whole files and excerpts of the best-ranked files within ``allowance`` tokens.

    ``ratio``: exact tokens per estimated token so far; ``estimate(chars)``: estimated
    tokens of that many characters; ``text_of(path)``: the file's text; ``render_whole``:
    its whole-file block; ``definers``: how many files define each name (a name the task
    mentions counts for less the more files define it); ``file_cache``: what this computes
    per file content (its lines, definition words, cost table), kept by the caller between
    packs (path -> (tags, lines, words, cost)); ``units``: :func:`content_units` of the same
    arguments, when the caller chooses more than once for one ranking."""
    content = Content()
    left = float(allowance)
    chars_per_token = 1000.0 / max(ratio * estimate(1000), 1e-6)
    tokens = lambda text: ratio * estimate(len(text))  # noqa: E731
    picked: dict[str, list[int]] = {}
    units, lines_of, costs = units or content_units(ranking, files, text_of, definers, file_cache)
    for path, r, j in units:
        if left < MIN_ROOM:
            break
        if path in content.blocks and path not in content.excerpts:
            continue  # shown whole
        indexed = files[path]
        if path not in picked:  # the file's first turn: whole, if it is cheap and ranks high enough
            picked[path] = []
            whole_cost = ratio * estimate(indexed.size + len(path) + 20)
            if r <= CANDIDATES and (whole_cost <= WHOLE_SHARE * left or (whole_cost <= left and j < 0)):
                block = render_whole(path)
                content.whole.append(path)
                content.blocks[path] = block
                left -= quantize(tokens(block))
                continue
        if j < 0:
            continue
        old = content.blocks.get(path, "")
        trial = picked[path] + [j]
        excerpt = build_excerpt(
            indexed, lines_of[path], trial, left + tokens(old), chars_per_token=chars_per_token, cost=costs[path]
        )
        if excerpt is None or len(excerpt.definitions) < len(_distinct(indexed, trial)):
            continue  # the definition does not fit
        if content.blocks and tokens(excerpt.text) - tokens(old) > UNIT_SHARE * left:
            continue  # one definition may not take most of the room (but the first may)
        picked[path] = trial
        content.excerpts[path] = excerpt
        content.blocks[path] = excerpt.text
        # Costs in coarse steps: a file that grows a little rarely changes what later ones get.
        left -= quantize(tokens(excerpt.text)) - (quantize(tokens(old)) if old else 0.0)
    for path, excerpt in content.excerpts.items():
        content.hidden[path] = {
            j for j, d in enumerate(files[path].tags.definitions)
            if any(a <= d.start and d.end <= b for a, b in excerpt.ranges)
        }  # fmt: skip
    content.tokens = allowance - left
    return content


_TEST_PATH = re.compile(r"(^|/)(tests?|testing|spec)/|(^|/)(test_[^/]*|[^/]*_tests?\.[a-z]+|[^/]*\.(spec|test)\.[a-z]+|conftest\.py)$")


def source_first(paths: list[str]) -> list[str]:
    """``paths`` (best first) with each test file moved TEST_DEMOTION places down: a task
    names the failing test, but the fix goes in the code under test, so its source comes
    before the test's when the two rank close."""
    keyed = [((i + 1) * (TEST_DEMOTION if _TEST_PATH.search(path) else 1), i, path) for i, path in enumerate(paths)]
    return [path for _, _, path in sorted(keyed)]


def content_units(
    ranking: Ranking,
    files: dict[str, IndexedFile],
    text_of: Callable[[str], str],
    definers: Mapping[str, int] | None = None,
    file_cache: dict[str, tuple] | None = None,
) -> Units:
    """The pool's units, best first: (path, rank, definition index; -1 for a file without
    definitions), and each file's lines and excerpt cost table.

    Two orders over every definition of the POOL files are fused by reciprocal rank: the
    prior (the file's rank r and the definition's place k in its file's own order, worth
    r^-1 · k^-0.6) and the lexical one (BM25 of the task's words against each definition's
    own words, the IDF taken over the whole pool). The first finds what the ranking
    found, file by file; the second finds the one function a bug report describes even
    deep in a 5,000-line module or in a file the ranking put 30th."""
    seeds = ranking.seeds
    named = {name: weight / max(1, (definers.get(name) or 1) if definers is not None else 1)
             for name, weight in seeds.identifiers.items()}  # fmt: skip
    pool = source_first(ranking.files[: POOL * 2])[:POOL]
    prior: list[tuple[float, int, int]] = []  # (-worth, rank, definition)
    documents: list[Counter[str]] = []
    keys: list[tuple[int, int]] = []
    lines_of: dict[str, list[str]] = {}
    costs: dict[str, ExcerptCost] = {}
    for r, path in enumerate(pool, 1):
        indexed = files[path]
        if not indexed.tags.definitions:
            prior.append((-_worth(r, 1), r, -1))
            continue
        cached = file_cache.get(path) if file_cache is not None else None
        if cached is None or cached[0] is not indexed.tags:
            lines = _lines(text_of(path))
            cached = (indexed.tags, lines, own_words(indexed, lines), ExcerptCost(path, lines))
            if file_cache is not None:
                file_cache[path] = cached
        lines_of[path], costs[path] = cached[1], cached[3]
        order = definition_order(
            indexed, cached[1], ranking.file_definition_scores(path).tolist(), named, seeds.words, cached[2]
        )
        prior.extend((-_worth(r, k), r, j) for k, j in enumerate(order, 1))
        documents.extend(cached[2])
        keys.extend((r, j) for j in range(len(cached[2])))
    worth: dict[tuple[int, int], float] = {(r, j): -negative for negative, r, j in prior}
    lexical = bm25_scores(documents, seeds.words, seeds.word_weights)
    ranked = sorted((i for i in range(len(keys)) if lexical[i] > 0), key=lambda i: (-lexical[i], keys[i]))
    for g, i in enumerate(ranked, 1):
        worth[keys[i]] += round(g**-LEXICAL_DECAY, 12)
    best = sorted(worth, key=lambda key: (-round(worth[key], 12), key))[:MAX_UNITS]
    return [(pool[r - 1], r, j) for r, j in best], lines_of, costs


def _worth(rank: int, k: int) -> float:
    return round(rank**-FILE_DECAY * k**-DEFINITION_DECAY, 12)


def _distinct(indexed: IndexedFile, chosen: list[int]) -> list[int]:
    """Those of ``chosen`` not inside another of them (what build_excerpt counts as shown)."""
    defs = indexed.tags.definitions
    return [
        i for i in chosen
        if not any(j != i and defs[j].start <= defs[i].start and defs[i].end <= defs[j].end for j in chosen)
    ]  # fmt: skip
