"""What of the top-ranked files the pack shows as source: whole files and excerpts.

The pack shows the source of the best-ranked files within a share of the budget. Its units
are single definitions (a class by its own lines: header, docstring, attributes; its
methods are units of their own) and files without definitions, taken best first by their
worth, one scale over the POOL best-ranked files (see :func:`content_units`):

    worth = relevance · r^-d · (tokens + 50)^-0.5

- relevance: BM25 of the task's words against the unit's own words (its name, twice, its
  scopes' headers, its lines, strings and comments included; the IDF over the pool), as a
  share of the pool's best, squared (BM25 grows like a log-odds: half the best score is
  far less than half as likely), plus a little of the reference graph's flow into it and
  the names the task writes. So the function that raises the error a report quotes in
  plain words comes first even deep in a 5,000-line module, or in a file ranked 30th;
- r: the file's rank (a test's or the documentation's counts TEST_DEMOTION times): the
  chance that a unit is the code the task is about falls off down the ranking; d is 1
  where the room holds a handful of units (4K tokens or less), 0.5 where it holds hundreds
  (16K or more), and 0.5 for the pool's best lexical match at any room (weighted by the
  unit's lexical share between);
- tokens: what the unit costs; a long function is likelier to hold the fix than a short
  one, but not in proportion to its length.

The first TOP_WHOLE files of the ranking are offered whole before any unit, and any file
among the first :data:`CANDIDATES` at its first turn, each when that costs at most
WHOLE_SHARE/r of the room left (all of it /r for a file without definitions); from further
down only excerpts. A unit that does not fit, or would take more than UNIT_SHARE of the
whole allowance, is passed over. Room left over goes to the map, never to small files
further down the ranking. Generated and metadata files never get here (the index leaves
them out).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kcode.context.excerpt import Excerpt, ExcerptCost, bm25_scores, build_excerpt, own_ranges, own_words
from kcode.context.index import IndexedFile
from kcode.context.layout import quantize
from kcode.context.rank import Ranking, subwords

__all__ = ["Content", "Units", "choose_content", "content_units", "CONTENT_SHARE", "NO_TASK_CONTENT_SHARE", "WHOLE_SHARE", "MIN_ROOM", "CANDIDATES", "is_test_path"]

CONTENT_SHARE = 0.9  # in "auto", the share of the budget offered to whole files and excerpts (the map: the rest)
# Without a task nothing says which bodies matter: the map's outline of the whole repository
# gets most of the budget (and, coming first, is most of a cached prefix that a commit to a
# shown file leaves intact).
NO_TASK_CONTENT_SHARE = 0.25
WHOLE_SHARE = 0.6  # a file is shown whole when that costs at most this share of the room left
UNIT_SHARE = 0.5  # nor a definition more than this share (except the very first unit)
MIN_ROOM = 100  # tokens: less room left than this ends the choice
TOP_WHOLE = 1  # files from the top of the ranking offered whole before any definition
CANDIDATES = 20  # files that may be shown whole, from the top of the ranking
POOL = 40  # files whose definitions take part (as excerpts), from the top of the ranking
MAX_UNITS = 3000  # units tried, best first
TEST_DEMOTION = 3  # a test file's rank counts this many times (see source_first)
# A unit's worth (see content_units): relevance * rank ** -file_decay(room) * (tokens + COST_FLOOR) ** -COST_DECAY
COST_DECAY, COST_FLOOR = 0.5, 50.0
# The file prior's exponent falls with the room offered to source: where a handful of units
# fit, the best files' come first (rank^-1); with room for hundreds, lower files' best
# definitions get their turn (rank^-0.5). Log-linear between the two rooms. A unit's own
# exponent moves from the flat one towards that by how far its lexical share is below the
# pool's best: the definition that holds a report's words keeps its turn at any room.
FILE_DECAY_SMALL, FILE_DECAY_LARGE = 1.0, 0.5
SMALL_ROOM, LARGE_ROOM = 4096.0, 16384.0
# BM25 grows like a log-odds of relevance: a unit scoring half the best is far less than
# half as likely to be the one, so its share counts squared.
LEXICAL_POWER = 2.0
GRAPH_WEIGHT = 0.1  # the walk's flow into a definition, as a share of the pool's most, against BM25's share
NAMED_WEIGHT = 1.0  # per name the task writes (less the more files define it)


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
    units, lines_of, costs = units or content_units(ranking, files, text_of, definers, file_cache, allowance)
    # The best-ranked files are offered whole before any unit (j = -2: whole or nothing).
    lead = sorted({(r, path) for path, r, _ in units if r <= TOP_WHOLE})
    for path, r, j in [(path, r, -2) for r, path in lead] + units:
        if left < MIN_ROOM:
            break
        if path in content.blocks and path not in content.excerpts:
            continue  # shown whole
        indexed = files[path]
        if j == -2:
            whole_cost = ratio * estimate(indexed.size + len(path) + 20)
            if path not in picked and whole_cost <= WHOLE_SHARE * left / r:
                picked[path] = []
                block = render_whole(path)
                content.whole.append(path)
                content.blocks[path] = block
                left -= quantize(tokens(block))
            continue
        if path not in picked:  # the file's first turn: whole, if it is cheap and ranks high enough
            picked[path] = []
            whole_cost = ratio * estimate(indexed.size + len(path) + 20)
            # The room a file may take whole falls with its rank (1/r).
            if r <= CANDIDATES and whole_cost <= (WHOLE_SHARE if j >= 0 else 1.0) * left / r:
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
        if excerpt is None or len(excerpt.definitions) < len(_distinct(indexed, trial, costs[path])):
            continue  # the definition does not fit
        if content.blocks and tokens(excerpt.text) - tokens(old) > UNIT_SHARE * allowance:
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


# Tests, and the documentation's and examples' code: a report's words match them best, but a
# fix goes in the code they exercise or describe.
_TEST_PATH = re.compile(
    r"(^|/)(tests?|testing|spec|docs?|examples?)/"
    r"|(^|/)(test_[^/]*|[^/]*_tests?\.[a-z]+|[^/]*\.(spec|test)\.[a-z]+|conftest\.py)$"
)


def is_test_path(path: str) -> bool:
    """Whether ``path`` is a test, or the documentation's or examples' code."""
    return _TEST_PATH.search(path) is not None


def source_first(paths: list[str]) -> list[str]:
    """``paths`` (best first) with each test file moved TEST_DEMOTION places down: a task
    names the failing test, but the fix goes in the code under test, so its source comes
    before the test's when the two rank close."""
    keyed = [((i + 1) * (TEST_DEMOTION if _TEST_PATH.search(path) else 1), i, path) for i, path in enumerate(paths)]
    return [path for _, _, path in sorted(keyed)]


def file_decay(room: float | None) -> float:
    """The exponent of the file prior, rank^-decay, for ``room`` tokens offered to source
    (None: as for a large room)."""
    if room is None or room >= LARGE_ROOM:
        return FILE_DECAY_LARGE
    if room <= SMALL_ROOM:
        return FILE_DECAY_SMALL
    share = math.log(room / SMALL_ROOM) / math.log(LARGE_ROOM / SMALL_ROOM)
    return FILE_DECAY_SMALL + (FILE_DECAY_LARGE - FILE_DECAY_SMALL) * share


def content_units(
    ranking: Ranking,
    files: dict[str, IndexedFile],
    text_of: Callable[[str], str],
    definers: Mapping[str, int] | None = None,
    file_cache: dict[str, tuple] | None = None,
    room: float | None = None,
) -> Units:
    """The pool's units, best first: (path, rank, definition index; -1 for a file without
    definitions), and each file's lines and excerpt cost table.

    Every definition of the POOL files (and every such file without definitions, as one
    document) is scored on one scale: its relevance, the BM25 of the task's words against
    its own words (the IDF over the whole pool) as a share of the best, squared, plus what
    the graph and the task's names say (GRAPH_WEIGHT of the walk's flow into it as a share of the
    pool's most, NAMED_WEIGHT per name the task writes, less the more files define it);
    times its file's prior, rank^-decay (see :func:`file_decay`: steeper the less ``room``
    is offered to source); per unit of room, tokens^-COST_DECAY (a long
    function is likelier to hold the fix than a short one, but not in proportion to its
    length). So the function whose words a report uses comes first even deep in a
    5,000-line module or in a file ranked 30th, and a file's definitions that share no word
    with the task do not crowd out those of the next files."""
    seeds = ranking.seeds
    named = {name: weight / max(1, (definers.get(name) or 1) if definers is not None else 1)
             for name, weight in seeds.identifiers.items()}  # fmt: skip
    pool = source_first(ranking.files[: POOL * 2])[:POOL]
    documents: list[Counter[str]] = []
    keys: list[tuple[int, int]] = []  # (rank, definition index; -1: the file)
    graph: list[float] = []
    sizes: list[int] = []  # characters
    lines_of: dict[str, list[str]] = {}
    costs: dict[str, ExcerptCost] = {}
    for r, path in enumerate(pool, 1):
        indexed = files[path]
        if not indexed.tags.definitions:  # one document: its path and text (kept with the file's content)
            cached = file_cache.get(path) if file_cache is not None else None
            if cached is None or cached[0] is not indexed.tags:
                cached = (indexed.tags, None, [Counter(subwords(path + "\n" + text_of(path)))], None)
                if file_cache is not None:
                    file_cache[path] = cached
            documents.extend(cached[2])
            keys.append((r, -1))
            graph.append(0.0)
            sizes.append(indexed.size)
            continue
        cached = file_cache.get(path) if file_cache is not None else None
        if cached is None or cached[0] is not indexed.tags:
            lines = _lines(text_of(path))
            cached = (indexed.tags, lines, own_words(indexed, lines), ExcerptCost(path, lines))
            if file_cache is not None:
                file_cache[path] = cached
        lines_of[path], cost = cached[1], cached[3]
        costs[path] = cost
        if cost.own is None:
            cost.own = own_ranges(indexed, cached[1])
        documents.extend(cached[2])
        flow = ranking.file_definition_scores(path).tolist()
        for j, d in enumerate(indexed.tags.definitions):
            keys.append((r, j))
            graph.append(flow[j])
            own = cost.own[j]
            spans = own if own is not None else ((max(1, d.start), min(d.end, len(cached[1]))),)
            sizes.append(sum(cost.prefix[b] - cost.prefix[a - 1] for a, b in spans if a <= b))
    lexical = bm25_scores(documents, seeds.words, seeds.word_weights)
    best_lexical = max(lexical, default=0.0) or 1.0
    best_graph = max(graph, default=0.0) or 1.0
    worth: dict[tuple[int, int], float] = {}
    decay = file_decay(room)
    for i, (r, j) in enumerate(keys):
        share = (lexical[i] / best_lexical) ** LEXICAL_POWER
        relevance = share + GRAPH_WEIGHT * graph[i] / best_graph
        if j >= 0:
            relevance += NAMED_WEIGHT * named.get(files[pool[r - 1]].tags.definitions[j].name, 0.0)
        # the pool's best lexical matches keep the flat prior whatever the room
        d = FILE_DECAY_LARGE + (decay - FILE_DECAY_LARGE) * (1.0 - share)
        worth[(r, j)] = round(relevance * r**-d * (sizes[i] / 4.0 + COST_FLOOR) ** -COST_DECAY, 12)
    best = sorted(worth, key=lambda key: (-worth[key], key))[:MAX_UNITS]
    return [(pool[r - 1], r, j) for r, j in best], lines_of, costs


def _distinct(indexed: IndexedFile, chosen: list[int], cost: ExcerptCost | None = None) -> list[int]:
    """Those of ``chosen`` not inside another of them shown whole (what build_excerpt counts
    as shown: a class shown by its own lines does not hold its methods)."""
    defs = indexed.tags.definitions
    own = cost.own if cost is not None and cost.own is not None else [None] * len(defs)
    return [
        i for i in chosen
        if not any(j != i and own[j] is None and defs[j].start <= defs[i].start and defs[i].end <= defs[j].end
                   for j in chosen)
    ]  # fmt: skip
