"""What a ranking starts from: the seeds a task gives (:mod:`kcode.context.rank` walks from them).

A task seeds the files whose paths it names, the files defining the identifiers it names
(those written as code weigh more than plain words that happen to name a definition), files
in the tracebacks it quotes, failing tests' files, the files the agent touched, modules a
word names, and modules an identifier spells (``autodoc_typehints``: ``autodoc/typehints.py``).
Its words (the first line's weighing double) feed the lexical ranking, and its code spans
(`like this`) the quoted order: the file that holds a quoted span verbatim is likely where
the fix goes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

from kcode.context.index import IndexedFile

__all__ = [
    "Seeds",
    "PathIndex",
    "DefinerCounts",
    "seeds_from_task",
    "traceback_paths",
    "quoted_spans",
    "quoted_matches",
    "subwords",
    "path_words",
]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE_CONTEXT = re.compile(r"`[^`\n]{1,200}`")
_TRACEBACK_PY = re.compile(r'File "([^"\n]+)", line \d+')
_PATH_LINE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.[A-Za-z0-9]{1,8}):\d+")
_PATHISH = re.compile(r"(?<![\w-])((?:[\w.-]+/)*[\w-]+\.[A-Za-z0-9]{1,8})(?![\w/])")
_CAMEL = re.compile(r"[a-z][A-Z]")
_SUBWORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

NAMED_MODULE_WEIGHT = 4.0  # seed weight of the module a compound identifier spells (see PathIndex.named_by)
PLAIN_WORD_WEIGHT = 0.25  # seed weight of a task word that names a definition but is not written as code
TITLE_WEIGHT = 1.0  # extra weight of the task's first line's words in the lexical ranking


class DefinerCounts(Protocol):
    """How many files define a name (a dict, or the ranker's view of its graph)."""

    def get(self, name: str, default: int | None = None, /) -> int | None: ...


def subwords(text: str) -> list[str]:
    """Lower-case words of ``text``, identifiers split at ``_`` and case changes
    (``ModelChoiceField`` → model, choice, field; ``UUIDField`` → uuid, field)."""
    return [w.lower() for w in _SUBWORD.findall(text) if len(w) > 1]


def path_words(path: str) -> list[str]:
    return [word for part in re.split(r"[/._-]", path) for word in subwords(part)]


@dataclass
class Seeds:
    """What the walk restarts at, as weights (any scale)."""

    identifiers: dict[str, float] = field(default_factory=dict)  # name -> weight
    paths: dict[str, float] = field(default_factory=dict)  # repo path -> weight
    focus: frozenset[str] = frozenset()  # read or edited by the agent
    words: tuple[str, ...] = ()  # the task's words, for the lexical ranking (subwords())
    word_weights: dict[str, float] = field(default_factory=dict)  # extra weight of some words (default 1)
    quoted: dict[str, float] = field(default_factory=dict)  # repo path -> weight of the task's code spans it holds


class PathIndex:
    """Repo paths by every suffix of their components, by lower-case stem, and by the words
    of their last two module names (built once per file set, reused for every task)."""

    def __init__(self, files: Iterable[str]) -> None:
        self.by_suffix: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        self.by_tail: dict[tuple[str, ...], list[str]] = {}
        for path in files:
            parts = path.split("/")
            for i in range(len(parts)):
                self.by_suffix.setdefault("/".join(parts[i:]), []).append(path)
            stem = parts[-1].rsplit(".", 1)[0].lower()
            self.by_stem.setdefault(stem, []).append(path)
            modules = parts[:-1] if stem == "__init__" else [*parts[:-1], stem]
            if len(modules) >= 2:
                tail = tuple(subwords(modules[-2]) + subwords(modules[-1]))
                if len(tail) >= 2:
                    self.by_tail.setdefault(tail, []).append(path)

    def named_by(self, identifier: str) -> list[str]:
        """Paths whose last two module names an identifier spells, as a run of its words:
        a config value or test named ``autodoc_typehints_format``, ``test_pycode_ast``
        names ``autodoc/typehints.py``, ``pycode/ast.py``."""
        words = subwords(identifier)
        found: list[str] = []
        for n in range(2, len(words) + 1):
            for i in range(len(words) - n + 1):
                found.extend(self.by_tail.get(tuple(words[i : i + n]), ()))
        return sorted(set(found))

    def match(self, named: Iterable[str]) -> set[str]:
        """Match absolute or partial paths to repo paths by their longest common suffix."""
        found: set[str] = set()
        for raw in named:
            parts = PurePosixPath(raw.replace("\\", "/")).parts
            for i in range(len(parts)):
                hits = self.by_suffix.get("/".join(parts[i:]))
                if hits:
                    if len(hits) <= 3 or i < len(parts) - 1:
                        found.update(hits)
                    break
        return found


QUOTED_MIN_CHARS = 3
QUOTED_MAX_SHARE = 0.02  # a span found in more files than this share (and more than 3) says nothing


def quoted_spans(task: str) -> list[str]:
    """The task's code spans (```like this```), stripped, in a fixed order: a bug report
    quotes the code it is about (``follow_symlinks=False``, ``:kbd:``), and the file that
    holds it verbatim is likely where the fix goes."""
    spans = {span[1:-1].strip() for span in _CODE_CONTEXT.findall(task)}
    return sorted(span for span in spans if len(span) >= QUOTED_MIN_CHARS)


def quoted_matches(spans: Sequence[str], texts: Iterable[tuple[str, str]]) -> dict[str, float]:
    """Per file holding some of ``spans`` verbatim: the sum of their weights, log(N / df),
    over the spans that few files hold (see QUOTED_MAX_SHARE)."""
    if not spans:
        return {}
    holders: dict[str, list[str]] = {span: [] for span in spans}
    n_files = 0
    for path, text in texts:
        n_files += 1
        for span in spans:
            if span in text:
                holders[span].append(path)
    limit = max(3, QUOTED_MAX_SHARE * n_files)
    scores: dict[str, float] = {}
    for span in spans:
        found = holders[span]
        if 0 < len(found) <= limit:
            weight = math.log(n_files / len(found)) if n_files > len(found) else 0.0
            for path in found:
                scores[path] = scores.get(path, 0.0) + weight
    return {path: round(score, 9) for path, score in scores.items() if score > 0}


def traceback_paths(text: str, paths: PathIndex) -> set[str]:
    """Repo files named in Python tracebacks or ``path:line`` locations in ``text``."""
    return paths.match(_TRACEBACK_PY.findall(text) + _PATH_LINE.findall(text))


def seeds_from_task(
    task: str,
    files: dict[str, IndexedFile],
    defined: DefinerCounts,
    paths_index: PathIndex,
    *,
    focus_files: Sequence[str] = (),
    failing_files: Sequence[str] = (),
) -> Seeds:
    """Seeds from the task text; ``defined`` maps each defined name to its number of definers."""
    seeds = Seeds(focus=frozenset(f for f in focus_files if f in files), words=tuple(sorted(set(subwords(task)))))
    if TITLE_WEIGHT != 0:
        title = task.strip().split("\n", 1)[0] if task.strip() else ""
        seeds.word_weights = {w: 1.0 + TITLE_WEIGHT for w in set(subwords(title))}
    code_words: set[str] = set()
    for span in _CODE_CONTEXT.findall(task):
        code_words.update(_IDENT.findall(span))
    for match in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(|\.([A-Za-z_][A-Za-z0-9_]*)", task):
        code_words.add(match.group(1) or match.group(2))
    for word in set(_IDENT.findall(task)):
        count = defined.get(word)
        if not count or len(word) < 3:
            continue
        codeish = word in code_words or "_" in word or any(c.isupper() for c in word[1:]) or any(c.isdigit() for c in word)
        seeds.identifiers[word] = 1.0 if codeish else PLAIN_WORD_WEIGHT
    paths = seeds.paths
    for path in paths_index.match(_PATHISH.findall(task)):
        paths[path] = paths.get(path, 0.0) + 4.0
    for path in traceback_paths(task, paths_index) | {f for f in failing_files if f in files}:
        paths[path] = paths.get(path, 0.0) + 4.0
    for path in seeds.focus:
        paths[path] = paths.get(path, 0.0) + 2.0
    # An identifier spelling a package and module (``autodoc_typehints``) seeds that module
    # as strongly as a path the task writes.
    for word in sorted({w for w in _IDENT.findall(task) if "_" in w.strip("_") or _CAMEL.search(w)}):
        hits = [p for p in paths_index.named_by(word) if files.get(p) is not None and files[p].language is not None]
        for path in hits:
            paths[path] = paths.get(path, 0.0) + NAMED_MODULE_WEIGHT / len(hits)
    # A word naming a module (``autodetector`` for autodetector.py) seeds that module weakly
    # (code only: "images" names a module, not every images.txt of the test fixtures).
    words = {w.lower() for w in _IDENT.findall(task) if len(w) >= 4}
    for stem in sorted(words):
        hits = [p for p in paths_index.by_stem.get(stem, ()) if files[p].language is not None]
        for path in hits:
            paths[path] = paths.get(path, 0.0) + 1.0 / len(hits)
    return seeds
