"""Look up where an identifier is defined and referenced, or what a file defines.

This is what the ``repo_map`` tool shows: the parts of the repository the pack left out,
from the same cached tags (no file is parsed twice).
"""

from __future__ import annotations

from pathlib import Path

from kcode.context.index import IndexedFile

__all__ = ["lookup"]

_MAX_REFERENCES = 60
_MAX_DEFINITIONS = 40


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
        near = sorted(p for p in files if name.lower() in p.lower())[:10]
        hint = ("\nFiles whose path contains it:\n  " + "\n  ".join(near)) if near else ""
        return f"No definition or reference of {query!r} found in {len(files)} indexed files.{hint}"
    out = [f"Definitions of {query} ({len(definitions)}):"]
    out += ["  " + d for d in definitions[:_MAX_DEFINITIONS]] or ["  (none found)"]
    if len(definitions) > _MAX_DEFINITIONS:
        out.append(f"  … {len(definitions) - _MAX_DEFINITIONS} more")
    out.append(f"References to {name} ({len(references)}):")
    out += ["  " + r for r in references[:_MAX_REFERENCES]] or ["  (none found)"]
    if len(references) > _MAX_REFERENCES:
        out.append(f"  … {len(references) - _MAX_REFERENCES} more")
    return "\n".join(out)
