"""The order of the pack's text: what changes least first, so a cached prefix survives.

The pack is a prompt prefix whose KV state is cached; after a commit, everything before
the first changed byte can be restored. So the pack is laid out in three parts:

1. the map's **core**, by path: a file's map entry shows signatures only, so an edit to a
   function's body leaves it as it was, and so does moving the file in any order;
2. the source blocks (whole files and excerpts), by the file's last commit time, oldest
   first, then path: a file that changes moves to the end of them, and files that change
   often stay there;
3. the map's **tail**: the units that fill the budget to its last 2 %, whose number moves
   with every byte of the content, by path.

The choice of what goes in is made stable too: content costs are counted in coarse steps
(:func:`quantize`), so a file growing by a few lines rarely changes what the files after it
get, and the core is the best units that fit a conservative share of the room those coarse
costs leave.
"""

from __future__ import annotations

from collections.abc import Callable

from kcode.context.index import IndexedFile
from kcode.context.render import render_file_map, render_map

__all__ = ["quantize", "render_sequence", "render_tail", "CORE_CHARS_PER_TOKEN"]

_STEPS_PER_DOUBLING = 4
CORE_CHARS_PER_TOKEN = 3.0  # the map core's room in characters: below most tokenizers' ratio


def quantize(tokens: float) -> float:
    """``tokens`` rounded up to a coarse step: 16 · 2^(j/4), the least that is not below it."""
    step, j = 16.0, 0
    while step < tokens:
        j += 1
        step = round(16.0 * 2.0 ** (j / _STEPS_PER_DOUBLING), 6)
    return step


def render_sequence(
    files: dict[str, IndexedFile],
    blocks: dict[str, str],
    mapped: dict[str, set[int]],
    key: Callable[[str], tuple[int, str]],
) -> str:
    """The map's core (``mapped``: path -> definition indices; empty: the path alone), by
    path, then the source blocks, by ``key``."""
    return render_map(files, mapped) + "".join(blocks[p] for p in sorted(blocks, key=key))


def render_tail(files: dict[str, IndexedFile], mapped: dict[str, set[int]]) -> str:
    """The map's tail: more entries, by path, after the sequence."""
    if not mapped:
        return ""
    return "<repo_map>\n" + "".join(render_file_map(files[p], mapped[p]) for p in sorted(mapped)) + "</repo_map>\n"
