"""Which tree-sitter grammar parses which file, and the tags query that goes with it.

Grammars come from the official per-language wheels (``tree-sitter-python``, ...), each of
which exposes ``language()`` and ships ``queries/tags.scm``. Where a wheel ships no tags query
(C#) or its query misses references a repo map needs (Python's only sees calls), the small
queries below fill in. A wheel that is not installed makes its files plain text.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["LanguageSpec", "Grammar", "language_for", "has_code_extension", "load_language", "LANGUAGES", "GRAMMAR_VERSION"]


@dataclass(frozen=True)
class LanguageSpec:
    name: str  # our name, also the Markdown fence tag
    module: str  # the grammar wheel's import name
    factory: str = "language"  # the function returning the language pointer
    query_modules: tuple[str, ...] = ()  # wheels whose tags.scm we use (default: module)
    extra_query: str = ""  # our additions


# Python's tags.scm only records calls as references; imports, base classes, attribute
# accesses and decorators are what tie a module to the files defining those names.
_PYTHON_EXTRA = """
(import_from_statement name: (dotted_name (identifier) @name)) @reference.import
(import_from_statement name: (aliased_import name: (dotted_name (identifier) @name))) @reference.import
(class_definition superclasses: (argument_list (identifier) @name)) @reference.class
(class_definition superclasses: (argument_list (attribute attribute: (identifier) @name))) @reference.class
(attribute attribute: (identifier) @name) @reference.attribute
(decorator (identifier) @name) @reference.call
(type (identifier) @name) @reference.type
(class_definition body: (block (expression_statement (assignment left: (identifier) @name) @definition.field)))
"""

# tree-sitter-c's and tree-sitter-cpp's tags.scm record definitions only.
_C_EXTRA = """
(call_expression function: (identifier) @name) @reference.call
(call_expression function: (field_expression field: (field_identifier) @name)) @reference.call
(type_identifier) @name @reference.type
"""

# tree-sitter-c-sharp ships no tags query.
_CSHARP = """
(class_declaration name: (identifier) @name) @definition.class
(struct_declaration name: (identifier) @name) @definition.class
(record_declaration name: (identifier) @name) @definition.class
(enum_declaration name: (identifier) @name) @definition.class
(interface_declaration name: (identifier) @name) @definition.interface
(method_declaration name: (identifier) @name) @definition.method
(constructor_declaration name: (identifier) @name) @definition.method
(property_declaration name: (identifier) @name) @definition.property
(namespace_declaration name: (_) @name) @definition.module
(invocation_expression function: (identifier) @name) @reference.call
(invocation_expression function: (member_access_expression name: (identifier) @name)) @reference.call
(object_creation_expression type: (identifier) @name) @reference.class
(base_list (identifier) @name) @reference.class
(variable_declaration type: (identifier) @name) @reference.type
(parameter type: (identifier) @name) @reference.type
"""

LANGUAGES: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec("python", "tree_sitter_python", extra_query=_PYTHON_EXTRA),
        LanguageSpec("javascript", "tree_sitter_javascript"),
        # TypeScript's tags.scm only adds TS constructs to JavaScript's.
        LanguageSpec(
            "typescript",
            "tree_sitter_typescript",
            "language_typescript",
            ("tree_sitter_javascript", "tree_sitter_typescript"),
        ),
        LanguageSpec("tsx", "tree_sitter_typescript", "language_tsx", ("tree_sitter_javascript", "tree_sitter_typescript")),
        LanguageSpec("go", "tree_sitter_go"),
        LanguageSpec("rust", "tree_sitter_rust"),
        LanguageSpec("java", "tree_sitter_java"),
        LanguageSpec("c", "tree_sitter_c", extra_query=_C_EXTRA),
        LanguageSpec(
            "cpp",
            "tree_sitter_cpp",
            extra_query=_C_EXTRA + "(call_expression function: (qualified_identifier name: (identifier) @name)) @reference.call\n",
        ),
        LanguageSpec("ruby", "tree_sitter_ruby"),
        # Its tags.scm expects qualified_name callees; plain ``f()`` is a bare (name) now.
        LanguageSpec(
            "php",
            "tree_sitter_php",
            "language_php",
            extra_query="(function_call_expression function: (name) @name) @reference.call\n",
        ),
        LanguageSpec("csharp", "tree_sitter_c_sharp", query_modules=("-",), extra_query=_CSHARP),
    )
}

_EXTENSIONS = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".rb": "ruby", ".rake": "ruby",
    ".php": "php",
    ".cs": "csharp",
}  # fmt: skip


def has_code_extension(name: str) -> bool:
    """Whether a file name ends in an extension some grammar parses (loaded or not)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in _EXTENSIONS


def language_for(path: str) -> str | None:
    """Our language name for a file path, or None for plain text."""
    base = path.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    name = _EXTENSIONS.get(base[dot:].lower()) if dot > 0 else None
    if name is None:
        return None
    return name if load_language(name) is not None else None


_lock = threading.Lock()


@lru_cache(maxsize=None)
def _wheel_query(module_name: str) -> str:
    module = importlib.import_module(module_name)
    path = Path(module.__file__).parent / "queries" / "tags.scm"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


@dataclass(frozen=True)
class Grammar:
    """A loaded grammar and its tags query, rewritten to be read with ``captures()``.

    ``captures()`` creates one Python object per captured node, where ``matches()`` creates
    a tuple, a dict and lists per match; on a cold build that difference is a good part of
    the time. What ``captures()`` loses is which name belongs to which definition, so in the
    definition patterns ``@name`` becomes ``@def_name`` and :mod:`kcode.context.tags` pairs
    each definition with the first ``@def_name`` whose innermost enclosing definition it is.
    References need only ``@name``; ``@doc``, ``@reference.*`` and the like are disabled so
    no node is created for them. ``kinds``: the definition captures, in pattern order.
    """

    language: Any
    query: Any  # tree_sitter.Query
    kinds: tuple[str, ...]


def _rewrite_query(language: Any, source: str) -> tuple[str, tuple[str, ...]]:
    from tree_sitter import Query

    whole = Query(language, source)
    encoded = source.encode("utf-8")
    patterns, kinds = [], []
    for i in range(whole.pattern_count):
        text = encoded[whole.start_byte_for_pattern(i) : whole.end_byte_for_pattern(i)].decode("utf-8")
        if "@definition." in text:
            text = re.sub(r"@name\b", "@def_name", text)
            kind = re.search(r"@(definition\.[\w.]+)", text).group(1)
            if kind not in kinds:
                kinds.append(kind)
        elif "@reference." not in text:
            continue  # tags nothing (Ruby's ``@ignore``, C++'s ``@local.scope`` alone)
        patterns.append(text)
    return "\n".join(patterns), tuple(kinds)


@lru_cache(maxsize=None)
def load_language(name: str) -> Grammar | None:
    """The :class:`Grammar` of one of :data:`LANGUAGES`, or None if its wheel is missing."""
    from tree_sitter import Language, Query

    spec = LANGUAGES[name]
    with _lock:
        try:
            module = importlib.import_module(spec.module)
        except ImportError:
            return None
        language = Language(getattr(module, spec.factory)())
        sources = [_wheel_query(m) for m in (spec.query_modules or (spec.module,)) if m != "-"]
        sources.append(spec.extra_query)
        text, kinds = _rewrite_query(language, "\n".join(sources))
        query = Query(language, text)
        for index in range(query.capture_count):
            capture = query.capture_name(index)
            if capture not in ("name", "def_name") and capture not in kinds:
                query.disable_capture(capture)
        return Grammar(language, query, kinds)


def _grammar_version() -> str:
    """Changes when a grammar wheel or tree-sitter is upgraded: part of the tag cache key."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ["tree-sitter"] + sorted({s.module.replace("_", "-") for s in LANGUAGES.values()}):
        try:
            parts.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist}=-")
    return ";".join(parts)


GRAMMAR_VERSION = _grammar_version()
