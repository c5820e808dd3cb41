"""Look up where an identifier is defined and referenced, or what a file defines.

This is what the ``repo_map`` tool shows: the parts of the repository the pack left out,
from the same cached tags (no file is parsed twice).
"""

from __future__ import annotations

import re
from pathlib import Path

from kcode.context.index import IndexedFile

__all__ = ["lookup"]

_MAX_REFERENCES = 60
_MAX_DEFINITIONS = 40
# words of a query written as a sentence that are not identifiers to look up
_FILLER = {"search", "find", "where", "what", "the", "for", "and", "definition", "definitions", "defined",
           "reference", "references", "usage", "usages", "function", "class", "method", "def", "show", "look"}


def _signature(indexed: IndexedFile, index: int) -> str:
    tags = indexed.tags
    d = tags.definitions[index]
    lines = [tags.headers[s][1].strip().splitlines()[0] for s in d.scopes]
    lines.append(tags.headers[d.header][1].rstrip())
    return " › ".join(lines[:-1] + [lines[-1].strip()]) if len(lines) > 1 else lines[-1].strip()


def _describe_file(indexed: IndexedFile) -> str:
    tags = indexed.tags
    if not tags.definitions:
        kind = indexed.language or "plain text"
        return f"{indexed.path} ({kind}, {tags.lines or '?'} lines): no definitions found."
    out = [f"{indexed.path} ({indexed.language}, {tags.lines} lines) defines:"]
    for i, d in enumerate(tags.definitions[: _MAX_DEFINITIONS * 5]):
        out.append(f"  {d.line}: {d.kind} {d.name} — {_signature(indexed, i)}")
    if len(tags.definitions) > _MAX_DEFINITIONS * 5:
        out.append(f"  … {len(tags.definitions) - _MAX_DEFINITIONS * 5} more")
    return "\n".join(out)


def lookup(root: Path, query: str, *, cache_path: Path | None = None) -> str:
    """Definitions and references of ``query`` (an identifier, ``Class.method``, or a path)."""
    from kcode.context.pack import get_packer

    packer = get_packer(root, cache_path=cache_path)
    with packer.lock:
        packer.index.refresh()
        files = packer.index.files
        skipped = packer.index.skipped
    query = query.strip().strip("`")
    if not query:
        return "Empty query: give an identifier (e.g. parse_duration, Config.replace) or a path."
    path = query.lstrip("./")
    if path in files:
        return _describe_file(files[path])
    if path in skipped:
        return f"{path} is not indexed: {skipped[path]}."
    matches = sorted(p for p in files if p.endswith("/" + path))
    if matches and len(matches) <= 5:
        return "\n\n".join(_describe_file(files[p]) for p in matches)
    found = _lookup_name(files, query)
    if found is not None:
        return found
    # several words ("search IDNAError", "where is parse_url defined"): each identifier in turn
    words = [w for w in re.findall(r"[A-Za-z_][\w.:]*[\w]", query) if len(w) >= 3 and w.lower() not in _FILLER]
    if len(words) > 1 or (words and words[0] != query):
        words = sorted(dict.fromkeys(words), key=lambda w: not re.search(r"[_.:]|[a-z][A-Z]|^[A-Z]", w))[:8]  # code-like first
        hits = [hit for hit in (_lookup_name(files, word) for word in words) if hit is not None]
        if hits:
            return "\n\n".join(hits[:3])
    name = query.replace("::", ".").split(".")[-1].rstrip("()")
    near = sorted(p for p in files if name.lower() in p.lower())[:10]
    hint = ("\nFiles whose path contains it:\n  " + "\n  ".join(near)) if near else ""
    return f"No definition or reference of {query!r} found in {len(files)} indexed files.{hint}"


def _lookup_name(files: dict[str, IndexedFile], query: str) -> str | None:
    """Definitions and references of one identifier (``name``, ``Class.method``); None: neither."""
    name = query.replace("::", ".").split(".")[-1].rstrip("()")
    qualifier = query.replace("::", ".").split(".")[-2] if "." in query.replace("::", ".") else None
    definitions: list[str] = []
    references: list[str] = []
    for indexed in files.values():
        tags = indexed.tags
        for i, d in enumerate(tags.definitions):
            if d.name != name:
                continue
            if qualifier and not any(qualifier in tags.headers[s][1] for s in d.scopes):
                continue
            definitions.append(f"{indexed.path}:{d.line}: {d.kind} — {_signature(indexed, i)}")
        for ref_name, line in tags.references:
            if ref_name == name:
                references.append(f"{indexed.path}:{line}")
    if not definitions and not references:
        return None
    out = [f"Definitions of {query} ({len(definitions)}):"]
    out += ["  " + d for d in definitions[:_MAX_DEFINITIONS]] or ["  (none found)"]
    if len(definitions) > _MAX_DEFINITIONS:
        out.append(f"  … {len(definitions) - _MAX_DEFINITIONS} more")
    out.append(f"References to {name} ({len(references)}):")
    out += ["  " + r for r in references[:_MAX_REFERENCES]] or ["  (none found)"]
    if len(references) > _MAX_REFERENCES:
        out.append(f"  … {len(references) - _MAX_REFERENCES} more")
    return "\n".join(out)
