"""What of the top-ranked files the pack shows as source: whole files and excerpts.

The pack shows the source of the best-ranked files within a share of the budget. Its units
are whole files and single definitions, taken best first by a harmonic prior: the k-th
best definition of the file ranked r is worth r^-1 · k^-0.6, as the chance that it is the
code the task is about falls off both down the ranking and down a file's definitions. So
the best file's best definition comes first, then the second definition of the first file
and the best of the second, and so on; a file whose whole text is cheap next to the room
left is shown whole at its first turn instead. A unit that does not fit is passed over.
Only :data:`CANDIDATES` files take part, the best of the top 2 × CANDIDATES once test files
count as TEST_DEMOTION times their rank, so room left over goes to the map, never to small
files further down the ranking. Generated and metadata files never get here
(the index leaves them out).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kcode.context.excerpt import Excerpt, ExcerptCost, build_excerpt, definition_order, own_words
from kcode.context.index import IndexedFile
from kcode.context.layout import quantize
from kcode.context.rank import Ranking

__all__ = ["Content", "choose_content", "CONTENT_SHARE", "NO_TASK_CONTENT_SHARE", "WHOLE_SHARE", "MIN_ROOM", "CANDIDATES"]

CONTENT_SHARE = 0.8  # in "auto", the share of the budget offered to whole files and excerpts
# Without a task nothing says which bodies matter: the map's outline of the whole repository
# gets most of the budget (and, coming first, is most of a cached prefix that a commit to a
# shown file leaves intact).
NO_TASK_CONTENT_SHARE = 0.25
WHOLE_SHARE = 0.6  # a file is shown whole when that costs at most this share of the room left
UNIT_SHARE = 0.5  # nor a definition more than this share (except the very first unit)
MIN_ROOM = 100  # tokens: less room left than this ends the choice
CANDIDATES = 20  # files that take part, from the top of the ranking
MAX_DEFINITIONS = 12  # definitions tried per file
TEST_DEMOTION = 3  # a test file's rank counts this many times (see source_first)
FILE_DECAY, DEFINITION_DECAY = 1.0, 0.6  # a unit's worth: rank ** -FILE_DECAY * k ** -DEFINITION_DECAY


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
) -> Content:
    """Whole files and excerpts of the best-ranked files within ``allowance`` tokens.

    ``ratio``: exact tokens per estimated token so far; ``estimate(chars)``: estimated
    tokens of that many characters; ``text_of(path)``: the file's text; ``render_whole``:
    its whole-file block; ``definers``: how many files define each name (a name the task
    mentions counts for less the more files define it); ``file_cache``: what this computes
    per file content (its lines, definition words, cost table), kept by the caller between
    packs (path -> (tags, lines, words, cost))."""
    content = Content()
    left = float(allowance)
    seeds = ranking.seeds
    named = {name: weight / max(1, (definers.get(name) or 1) if definers is not None else 1)
             for name, weight in seeds.identifiers.items()}  # fmt: skip
    chars_per_token = 1000.0 / max(ratio * estimate(1000), 1e-6)
    tokens = lambda text: ratio * estimate(len(text))  # noqa: E731
    orders: dict[str, list[int]] = {}
    picked: dict[str, list[int]] = {}
    lines_of: dict[str, list[str]] = {}
    costs: dict[str, ExcerptCost] = {}
    candidates = source_first(ranking.files[: CANDIDATES * 2])[:CANDIDATES]
    # (-(worth), rank, k): k is the 1-based position in the file's definition order.
    heap = [(-_worth(r, 1), r, 1) for r in range(1, len(candidates) + 1)]
    heapq.heapify(heap)
    while heap and left >= MIN_ROOM:
        _, r, k = heapq.heappop(heap)
        path = candidates[r - 1]
        indexed = files[path]
        if k == 1:
            whole_cost = ratio * estimate(indexed.size + len(path) + 20)
            if whole_cost <= WHOLE_SHARE * left or (whole_cost <= left and not indexed.tags.definitions):
                block = render_whole(path)
                content.whole.append(path)
                content.blocks[path] = block
                left -= quantize(tokens(block))
                continue
            if not indexed.tags.definitions:
                continue
            cached = file_cache.get(path) if file_cache is not None else None
            if cached is None or cached[0] is not indexed.tags:
                lines = _lines(text_of(path))
                cached = (indexed.tags, lines, own_words(indexed, lines), ExcerptCost(path, lines))
                if file_cache is not None:
                    file_cache[path] = cached
            lines_of[path], costs[path] = cached[1], cached[3]
            orders[path] = definition_order(
                indexed, cached[1], ranking.file_definition_scores(path).tolist(), named, seeds.words, cached[2]
            )
            picked[path] = []
        order = orders[path]
        if k > min(len(order), MAX_DEFINITIONS):
            continue
        if k < min(len(order), MAX_DEFINITIONS):
            heapq.heappush(heap, (-_worth(r, k + 1), r, k + 1))
        old = content.blocks.get(path, "")
        trial = picked[path] + [order[k - 1]]
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


def _worth(rank: int, k: int) -> float:
    return round(rank**-FILE_DECAY * k**-DEFINITION_DECAY, 12)


def _distinct(indexed: IndexedFile, chosen: list[int]) -> list[int]:
    """Those of ``chosen`` not inside another of them (what build_excerpt counts as shown)."""
    defs = indexed.tags.definitions
    return [
        i for i in chosen
        if not any(j != i and defs[j].start <= defs[i].start and defs[i].end <= defs[j].end for j in chosen)
    ]  # fmt: skip
