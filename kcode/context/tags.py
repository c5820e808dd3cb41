"""Definitions and references of one source file, from its tree-sitter tags query.

A :class:`FileTags` is what the cache stores per file content: it holds everything the
ranking and the map need, so neither re-reads the file. ``headers`` are the first lines of
definitions and of the scopes around them (a class, an ``impl`` block, a namespace); each
definition names its own header and the headers of its enclosing scopes, which is how the
map shows a method inside its class.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from kcode.context.languages import load_language

__all__ = ["Definition", "FileTags", "extract_tags", "parse_count", "TAGS_SCHEMA"]

TAGS_SCHEMA = 7  # bump when FileTags, its stored form or our queries change: part of the cache key

# Scopes shown around a definition although the tags query does not capture them.
_SCOPE_TYPES = frozenset(
    {
        "impl_item", "trait_item", "mod_item",  # Rust
        "namespace_definition", "class_specifier", "struct_specifier",  # C++
        "namespace_declaration", "file_scoped_namespace_declaration",  # C#
        "class_declaration", "interface_declaration", "enum_declaration",  # Java, TS, PHP
        "class_definition",  # Python
        "module", "class",  # Ruby
    }
)  # fmt: skip
# Top-level statements that bring in other modules (the "imports" an excerpt shows).
_IMPORT_TYPES = frozenset(
    {
        "import_statement", "import_from_statement", "future_import_statement",  # Python, JS, TS
        "import_declaration", "package_clause", "package_declaration",  # Go, Java
        "use_declaration", "extern_crate_declaration",  # Rust
        "preproc_include", "using_directive", "namespace_use_declaration",  # C, C++, C#, PHP
    }
)  # fmt: skip
_MAX_HEADER_ROWS = 6
_MAX_LINE_CHARS = 160

_parse_counter = [0]


def parse_count() -> int:
    """How many files this process has parsed (tests assert the cache spares re-parsing)."""
    return _parse_counter[0]


class Definition(NamedTuple):
    """A tuple, not a dataclass: a cold build makes and decodes hundreds of thousands."""

    name: str
    kind: str  # "class", "function", "method", ...
    line: int  # 1-based first line
    header: int  # index into FileTags.headers
    scopes: tuple[int, ...]  # header indices of the enclosing scopes, outermost first
    start: int  # 1-based first line of its source, decorators included
    end: int  # 1-based last line of its source


@dataclass
class FileTags:
    language: str | None
    lines: int
    headers: list[tuple[int, str]] = field(default_factory=list)  # (1-based line, text)
    definitions: list[Definition] = field(default_factory=list)
    references: list[tuple[str, int]] = field(default_factory=list)  # (name, 1-based line)
    imports: list[tuple[int, int]] = field(default_factory=list)  # top-level import lines, (first, last), 1-based

    @cached_property
    def reference_counts(self) -> dict[str, int]:
        """How often each name is referenced (computed once per content, not stored)."""
        return Counter([name for name, _ in self.references])

    @cached_property
    def defined_names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.definitions)

    def to_record(self) -> tuple[Any, ...]:
        """Plain tuples and lists of built-in values (what ``marshal`` stores as is)."""
        definitions = [tuple(d) for d in self.definitions]
        return (self.language, self.lines, self.headers, definitions, self.references, self.imports)

    @classmethod
    def from_record(cls, record: Any) -> FileTags:
        language, lines, headers, definitions, references, imports = record
        return cls(language, lines, headers, [Definition._make(d) for d in definitions], references, imports)


def _header_text(source: bytes, lines: list[bytes], node: Any) -> str:
    """The first lines of a definition: up to its body (the signature), at most a few rows."""
    start = node.start_point[0]
    end = start
    body = node.child_by_field_name("body")
    if body is not None and body.start_point[0] > start:
        # The signature ends where the token before the body ends (Python's ``:``), or on
        # the body's own first row when the body opens with a brace.
        before = body.prev_sibling
        while before is not None and before.is_extra:  # comments between signature and body
            before = before.prev_sibling
        end = before.end_point[0] if before is not None else body.start_point[0] - 1
        if source[body.start_byte : body.start_byte + 1] == b"{":
            end = body.start_point[0]
    end = min(end, start + _MAX_HEADER_ROWS - 1, len(lines) - 1)
    rows = []
    for row in lines[start : end + 1]:
        text = row.decode("utf-8", "replace").rstrip()
        rows.append(text if len(text) <= _MAX_LINE_CHARS else text[:_MAX_LINE_CHARS] + "…")
    return "\n".join(rows)


def extract_tags(source: bytes, language: str | None) -> FileTags:
    """Parse ``source`` and collect its tags; plain text (``language=None``) has none.

    This is most of a cold build's time, so the Python side is kept thin: one ``captures()``
    pass (see :class:`~kcode.context.languages.Grammar`), references deduplicated on raw
    bytes and row before any decoding, names interned.
    """
    lines = source.split(b"\n")
    line_count = len(lines) - (1 if lines and lines[-1] == b"" else 0)
    grammar = load_language(language) if language else None
    if grammar is None:
        return FileTags(None, line_count)
    from tree_sitter import Parser, QueryCursor

    _parse_counter[0] += 1
    root = Parser(grammar.language).parse(source).root_node
    captures = QueryCursor(grammar.query).captures(root)
    tags = FileTags(language, line_count)
    tags.imports = _import_ranges(root)
    raw_refs = {(node.text, node.start_point[0]) for node in captures.get("name", ())}
    names = _names_of({text for text, _ in raw_refs})
    references = sorted([(row + 1, names[text]) for text, row in raw_refs if names[text] is not None])
    tags.references = [(name, line) for line, name in references]

    # Definition nodes by (start, end), in the order the old per-match reading met them:
    # by position, then by the kind's first pattern.
    spans: dict[tuple[int, int], Any] = {}
    found: list[tuple[int, int, int, str]] = []  # start, kind order, end, kind
    for order, kind in enumerate(grammar.kinds):
        for node in captures.get(kind, ()):
            key = (node.start_byte, node.end_byte)
            spans.setdefault(key, node)
            found.append((key[0], order, key[1], kind[11:]))
    if not found:
        return tags
    name_of = _pair_names(spans, captures.get("def_name", ()))
    header_of: dict[tuple[int, int], int] = {}  # (start_byte, end_byte) -> header index

    def header_index(node: Any) -> int:
        key = (node.start_byte, node.end_byte)
        index = header_of.get(key)
        if index is None:
            index = header_of[key] = len(tags.headers)
            tags.headers.append((node.start_point[0] + 1, _header_text(source, lines, node)))
        return index

    found.sort()
    seen_defs: set[tuple[str, int]] = set()
    for start, _, end, kind in found:
        name = name_of.get((start, end))
        if name is None or (name, start) in seen_defs:
            continue
        seen_defs.add((name, start))
        node = spans[(start, end)]
        scopes = []
        row = node.start_point[0]
        parent = node.parent
        while parent is not None and parent.parent is not None:  # the root is no scope
            if parent.type in _SCOPE_TYPES or (parent.start_byte, parent.end_byte) in spans:
                if parent.start_point[0] != row:
                    scopes.append(header_index(parent))
            parent = parent.parent
        first = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
        tags.definitions.append(
            Definition(name, kind, row + 1, header_index(node), tuple(reversed(scopes)),
                       first.start_point[0] + 1, _last_row(node) + 1)
        )  # fmt: skip
    tags.definitions.sort(key=lambda d: (d.line, d.name))
    # Renumber headers by line so the stored form does not depend on query match order.
    order = sorted(range(len(tags.headers)), key=tags.headers.__getitem__)
    new_index = [0] * len(order)
    for new, old in enumerate(order):
        new_index[old] = new
    tags.headers = [tags.headers[i] for i in order]
    tags.definitions = [
        d._replace(header=new_index[d.header], scopes=tuple([new_index[s] for s in d.scopes]))
        for d in tags.definitions
    ]
    return tags


def _last_row(node: Any) -> int:
    """The 0-based last row holding the node's text (a node ending at column 0 ends before)."""
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def _import_ranges(root: Any) -> list[tuple[int, int]]:
    """Line ranges (1-based, inclusive, merged when adjacent) of the top-level imports."""
    ranges: list[tuple[int, int]] = []
    for child in root.children:
        if child.type not in _IMPORT_TYPES:
            continue
        first, last = child.start_point[0] + 1, _last_row(child) + 1
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    return ranges


def _pair_names(spans: dict[tuple[int, int], Any], def_names: Any) -> dict[tuple[int, int], str]:
    """Each definition span's name: the first ``@def_name`` node whose innermost enclosing
    definition span it is (a ``typedef struct s {..} t;`` is named ``t``, not ``s``)."""
    names = sorted({(n.start_byte, n.end_byte): n for n in def_names}.items())
    # Sweep spans (outer before inner at the same start) and names by start, keeping the
    # stack of open spans: the top is the innermost one containing the current name.
    ordered = sorted(spans, key=lambda k: (k[0], -k[1]))
    result: dict[tuple[int, int], str] = {}
    stack: list[tuple[int, int]] = []
    i = 0
    for (start, end), node in names:
        while i < len(ordered) and ordered[i][0] <= start:
            while stack and stack[-1][1] <= ordered[i][0] and stack[-1][1] < ordered[i][1]:
                stack.pop()
            stack.append(ordered[i])
            i += 1
        while stack and stack[-1][1] < end:
            stack.pop()
        if stack and stack[-1] not in result:
            name = _name(node.text)
            if name is not None:
                result[stack[-1]] = name
    return result


_known_names: dict[bytes, str | None] = {}  # raw bytes -> _name(raw), across files


def _names_of(raws: set[bytes]) -> dict[bytes, str | None]:
    """:func:`_name` of each, remembered across files (most names recur across thousands)."""
    known = _known_names
    if len(known) > 500_000:  # a long-lived process parsing many repositories
        known.clear()
    result = {}
    for raw in raws:
        name = known.get(raw, known)
        if name is known:
            name = known[raw] = _name(raw)
        result[raw] = name
    return result


def _name(raw: bytes | None) -> str | None:
    """An identifier from a capture's bytes, interned (names repeat across thousands of
    files); None for what cannot be one (empty, huge, multi-line)."""
    if not raw or len(raw) > 200 or b"\n" in raw:
        return None
    return sys.intern(raw.decode("utf-8", "replace"))
