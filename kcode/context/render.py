"""Text of the pack: whole files, and the repo map (definition signatures in their scopes).

Both renderings are pure functions of repo-relative paths and file contents, sorted by path,
so the same tree gives the same bytes on any machine and in any checkout location.
"""

from __future__ import annotations

from collections.abc import Iterable

from kcode.context.index import IndexedFile

__all__ = ["render_file", "render_map", "render_file_map", "map_unit_chars", "MapCost", "GAP"]

GAP = "⋮"


def render_file(path: str, text: str) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return f'<file path="{path}">\n{text}</file>\n'


def _file_map(indexed: IndexedFile, definitions: Iterable[int]) -> str:
    tags = indexed.tags
    wanted: set[int] = set()
    for index in definitions:
        d = tags.definitions[index]
        wanted.update(d.scopes)
        wanted.add(d.header)
    out = [f"{indexed.path}:"]
    next_line = 1  # the first line not yet shown
    for header in sorted(wanted):
        line, text = tags.headers[header]
        if line > next_line:
            out.append(GAP)
        out.append(text)
        next_line = max(next_line, line + text.count("\n") + 1)
    if next_line <= tags.lines:
        out.append(GAP)
    return "\n".join(out) + "\n"


def render_file_map(indexed: IndexedFile, chosen: Iterable[int]) -> str:
    """One file's map entry: its chosen definitions in their scopes, or its path alone."""
    chosen = list(chosen)
    return _file_map(indexed, chosen) if chosen else f"{indexed.path}\n"


def render_map(files: dict[str, IndexedFile], selected: dict[str, set[int]]) -> str:
    """The map of the ``selected`` files: each with the chosen definitions, or its path alone."""
    if not selected:
        return ""
    parts = ["<repo_map>\n"]
    for path in sorted(selected):
        chosen = selected[path]
        parts.append(render_file_map(files[path], chosen))
    parts.append("</repo_map>\n")
    return "".join(parts)


class MapCost:
    """Cumulative length of the map as units are added (approximate, no rendering).

    A unit is ``(path, -1)`` for listing a file or ``(path, i)`` for its i-th definition; the
    first unit of a file pays for its path, a definition for the headers not yet shown.
    :meth:`extend` continues where the last call stopped, so costing units chunk by chunk
    is linear in the units costed.
    """

    def __init__(self, files: dict[str, IndexedFile]) -> None:
        self.files = files
        self.total = len("<repo_map>\n</repo_map>\n")
        self._shown_files: set[str] = set()
        self._shown_headers: set[tuple[str, int]] = set()

    def extend(self, units: Iterable[tuple[str, int]]) -> list[int]:
        files, shown_files, shown_headers = self.files, self._shown_files, self._shown_headers
        total = self.total
        cumulative = []
        for path, index in units:
            if path not in shown_files:
                shown_files.add(path)
                total += len(path) + 2
            if index >= 0:
                tags = files[path].tags
                d = tags.definitions[index]
                for header in (*d.scopes, d.header):
                    if (path, header) not in shown_headers:
                        shown_headers.add((path, header))
                        total += len(tags.headers[header][1]) + 3  # the text, a newline, a gap
            cumulative.append(total)
        self.total = total
        return cumulative


def map_unit_chars(files: dict[str, IndexedFile], units: list[tuple[str, int]]) -> list[int]:
    """Cumulative length of the map after each unit of ``units`` (see :class:`MapCost`)."""
    return MapCost(files).extend(units)
