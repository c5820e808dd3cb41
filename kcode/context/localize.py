"""Fault localization: the definitions a set of failing tests most likely fails in.

Given the failing tests (their ids and failure texts, as ``run_tests`` reports them) and the
task, rank the definitions of the repository's source files (not its tests) by the evidence
for each, in the manner of Agentless and SWE-agent's localizers:

- a traceback frame in the definition (the innermost frames of the source count most);
- a failing test's body names it (a test of the wrong result of ``ordinal`` fails in the test
  itself: its frame says nothing, its body names ``ordinal``);
- the task names it (``ordinalize``, `` `LRUCache` ``, ``findall(``);
- a definition ranked so calls it (``ordinalize`` calls ``ordinal``): one hop.

Read from the repository index's tags (:mod:`kcode.context.tags`), so every language the index
parses is ranked; what to do with a definition is the caller's.
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field

from kcode.context.content import is_test_path
from kcode.context.index import IndexedFile
from kcode.context.spectrum import Spectrum
from kcode.context.tags import Definition

__all__ = ["Suspect", "failure_frames", "line_words", "lines_to_fill", "rank_suspects", "task_names"]

MAX_LINES = 150  # a definition longer than this is not a suspect (its methods may be)

# pytest's "path.py:12: in name" / "path.py:12: AssertionError", Python's 'File "path", line 12, in name'
_PYTEST_FRAME = re.compile(r"^([\w./\\-]+\.\w+):(\d+): ", re.M)
_PYTHON_FRAME = re.compile(r'File "([^"]+)", line (\d+), in ')
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
_STRONG = re.compile(r"`([^`\n]+)`|([A-Za-z_][\w.]*)\(")  # `code` or name( in a task
_NOT_CODE = {"module", "field", "variable", "constant", "property", "key"}  # kinds with no body to fix
_WEIGHTS = {"frame": 4.0, "innermost": 3.0, "test": 2.0, "task": 3.0, "task_word": 1.0, "callee": 1.5, "test_word": 1.0, "spectrum": 8.0}


@dataclass
class Suspect:
    path: str
    definition: Definition
    score: float = 0.0
    why: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def lines(self) -> int:
        return self.definition.end - self.definition.start + 1

    def add(self, weight: float, reason: str) -> None:
        self.score += weight
        if reason not in self.why:
            self.why.append(reason)


def failure_frames(text: str, files: dict[str, IndexedFile]) -> list[tuple[str, int]]:
    """The (repo path, line) of each traceback frame in ``text`` that is in an indexed file,
    in the order shown (outermost first). Absolute paths (a sandbox's, a venv's) are matched by
    their longest indexed suffix."""
    frames = []
    for match in [*_PYTEST_FRAME.finditer(text), *_PYTHON_FRAME.finditer(text)]:
        path = _repo_path(match[1].replace("\\", "/"), files)
        if path is not None:
            frames.append((match.start(), path, int(match[2])))
    return [(path, line) for _, path, line in sorted(frames)]


def _repo_path(path: str, files: dict[str, IndexedFile]) -> str | None:
    path = path.removeprefix("./")
    if path in files:
        return path
    parts = path.split("/")
    for start in range(1, len(parts)):
        tail = "/".join(parts[start:])
        if tail in files:
            return tail
    return None


def task_names(task: str) -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """The identifiers of a task: (named strongly, as `code` or a call; every word; the
    ``Owner.name`` pairs of dotted names)."""
    strong, dotted = set(), set()
    for match in _STRONG.finditer(task):
        code = match[1] or match[2] or ""
        strong.update(_IDENTIFIER.findall(code))
        for owner, name in re.findall(r"([A-Za-z_]\w*)\.([A-Za-z_]\w*)", code):
            dotted.add((owner, name))
    return strong, set(_IDENTIFIER.findall(task)), dotted


def words_of(name: str) -> set[str]:
    """The lowercase words of an identifier: ``do_truncate`` -> do, truncate; ``IntRange`` -> int, range."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return {word.lower() for word in spaced.split("_") if len(word) >= 3}


def _innermost(tags_defs: list[Definition], line: int) -> Definition | None:
    best = None
    for definition in tags_defs:
        if definition.start <= line <= definition.end and (best is None or definition.start >= best.start):
            best = definition
    return best


def _test_definition(indexed: IndexedFile, test_id: str) -> Definition | None:
    """The definition of ``file::Class::test[param]`` in its file (the test function)."""
    parts = [part.split("[")[0] for part in test_id.split("::")[1:]]
    if not parts:
        return None
    name = parts[-1]
    matches = [d for d in indexed.tags.definitions if d.name == name]
    if len(parts) > 1 and len(matches) > 1:
        scoped = [d for d in matches if any(parts[-2] in indexed.tags.headers[i][1] for i in d.scopes)]
        matches = scoped or matches
    return matches[0] if matches else None


def rank_suspects(files: dict[str, IndexedFile], failures: list[tuple[str, str]], task: str, *, limit: int = 6, spectrum: Spectrum | None = None) -> list[Suspect]:
    """The ``limit`` likeliest definitions of the source files for ``failures`` ((test id,
    failure text) pairs) and ``task``, best first; a definition over MAX_LINES lines is left out.
    With a ``spectrum`` (kcode.context.spectrum), each definition the failing tests ran gains
    by its likeliest line's score: the failing tests' own evidence where no traceback reaches
    the library (an assertion that fails in the test)."""
    source = {path: indexed for path, indexed in files.items()
              if not is_test_path(path) and not path.endswith(".pyi") and indexed.tags.definitions}
    by_name: dict[str, list[tuple[str, Definition]]] = defaultdict(list)
    for path, indexed in source.items():
        for definition in indexed.tags.definitions:
            by_name[definition.name].append((path, definition))
    suspects: dict[tuple[str, int], Suspect] = {}

    def suspect(path: str, definition: Definition) -> Suspect:
        key = (path, definition.start)
        if key not in suspects:
            suspects[key] = Suspect(path, definition)
        return suspects[key]

    def named(name: str, weight: float, reason: str, owner: str | None = None) -> None:
        found = by_name.get(name, [])
        if owner is not None:  # Owner.name: the one defined in Owner
            found = [(p, d) for p, d in found if any(owner in source[p].tags.headers[i][1] for i in d.scopes)] or found
        for path, definition in found:  # a name defined in many places says less of each
            suspect(path, definition).add(weight / len(found), reason)

    def worded(words: set[str], weight: float, reason: str) -> None:
        """A definition whose name is made of these words (``truncate`` -> ``do_truncate``)."""
        found = [(p, d) for name, defs in by_name.items() if words & words_of(name) for p, d in defs]
        for path, definition in found[:20]:
            suspect(path, definition).add(weight * len(words & words_of(definition.name)) / max(1, len(found)) ** 0.5, reason)

    for test_id, text in failures[:3]:  # a few failures carry the evidence; more repeat it
        frames = [(path, line) for path, line in failure_frames(text, files) if path in source]
        for depth, (path, line) in enumerate(reversed(frames)):
            definition = _innermost(source[path].tags.definitions, line)
            if definition is not None:
                suspect(path, definition).add(_WEIGHTS["frame"] + (_WEIGHTS["innermost"] if depth == 0 else 0.0), f"in the traceback of {test_id}")
        test_file = test_id.split("::")[0]
        indexed = files.get(test_file)
        test_def = _test_definition(indexed, test_id) if indexed is not None else None
        if test_def is not None:
            referenced = {name for name, line in indexed.tags.references if test_def.start <= line <= test_def.end}
            for name in referenced:
                named(name, _WEIGHTS["test"], f"called by {test_id.split('[')[0]}")
    if spectrum is not None:
        for path in spectrum.lines.keys() & source.keys():
            code = [d for d in source[path].tags.definitions if d.kind not in _NOT_CODE]
            best: dict[int, tuple[float, Definition]] = {}
            for line, score in spectrum.scores(path).items():
                definition = _innermost(code, line)
                if definition is not None and score > best.get(definition.start, (0.0, definition))[0]:
                    best[definition.start] = (score, definition)
            for score, definition in best.values():
                suspect(path, definition).add(_WEIGHTS["spectrum"] * score, f"run by the failing tests ({score:.2f})")
    test_names = sorted({test_id.split("::")[-1].split("[")[0] for test_id, _ in failures})
    for test_name in test_names[:6]:
        worded(words_of(test_name) - {"test", "tests"}, _WEIGHTS["test_word"], f"the subject of {test_name}")
    strong, words, dotted = task_names(task)
    for name in strong:
        owners = [owner for owner, attr in dotted if attr == name]
        named(name, _WEIGHTS["task"], "named in the task", owners[0] if owners else None)
        if name not in by_name:
            worded(words_of(name), _WEIGHTS["task_word"], "named in the task")
    for name in words - strong:
        named(name, _WEIGHTS["task_word"], "named in the task")
    for found in sorted(suspects.values(), key=lambda s: -s.score)[:3]:  # one hop: what the best ones call
        if found.score < _WEIGHTS["task"] or found.lines > MAX_LINES:
            continue
        body = {name for name, line in source[found.path].tags.references if found.definition.start <= line <= found.definition.end}
        for name in body - {found.name}:
            # the same file's definitions, or another file's top-level one of a name defined once
            # (not a method that shares a builtin's name: ``sorted``, ``append``)
            defined = by_name.get(name, [])
            for path, definition in defined:
                if path == found.path or (len(defined) == 1 and not definition.scopes):
                    suspect(path, definition).add(_WEIGHTS["callee"], f"called by {found.name}")
    # of same-named definitions in one scope (typing overloads, a property's setter) the longest
    longest: dict[tuple[str, str, tuple[int, ...]], Suspect] = {}
    for found in suspects.values():
        key = (found.path, found.name, found.definition.scopes)
        if key not in longest or found.lines > longest[key].lines:
            longest[key] = found
    ranked = [s for s in longest.values() if s.lines <= MAX_LINES and s.definition.kind not in _NOT_CODE]
    ranked.sort(key=lambda s: (-s.score, s.lines, s.path, s.definition.start))
    return ranked[:limit]


_LINE_COMMON = {"the", "and", "for", "with", "that", "this", "from", "not", "but", "are", "was", "get", "set", "all", "any", "one", "two"}


# --- lines within a definition --------------------------------------------------------

_LINE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_BARE = re.compile(r"^\s*(#.*|else:|try:|finally:|pass|[)\]}]+[,:]?|\)\s*(->.*)?:)?\s*$")  # nothing to fill in
_SIGNAL = re.compile(r"[<>=!]=?|[-+*/%]|\[.*:.*\]|\d|\w+=")  # comparisons, arithmetic, slices, numbers, keywords


def line_words(text: str) -> set[str]:
    """The identifiers and numbers of ``text`` (lowercase; no keywords, no common words)."""
    return {w.lower() for w in _LINE_WORD.findall(text) if len(w) > 1 and not keyword.iskeyword(w)} - _LINE_COMMON


def lines_to_fill(lines: list[str], start: int, end: int, words: set[str], limit: int, scores: dict[int, float] | None = None) -> list[int]:
    """Indexes (in ``lines``) of the lines of the definition at ``start``..``end`` worth
    filling in again: its body's statements without the docstring, comments and bare
    keywords; those sharing the report's words, or computing something, first. In file order.

    With ``scores`` (line number -> a spectrum's score, kcode.context.spectrum) that reach
    this definition, only the lines the failing tests ran are kept (a continuation line
    counts as its statement's first), the likeliest first: in that order, not the file's."""
    try:
        node = ast.parse(textwrap.dedent("".join(lines[start - 1 : end]))).body[0]
        body = node.body  # type: ignore[attr-defined]
    except (SyntaxError, IndexError, AttributeError):
        return []
    skip: set[int] = set()
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        skip = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    ran = _statement_scores(node, start - 1, scores) if scores else {}
    ranked = []
    for relative in range(first.lineno, min(node.end_lineno or 0, end - start + 1) + 1):
        index = start - 2 + relative
        text = lines[index]
        if relative in skip or _BARE.match(text) or (ran and relative not in ran):
            continue
        code = text.split("#", 1)[0]
        ranked.append((-ran.get(relative, 0.0), -(2 * len(line_words(code) & words) + bool(_SIGNAL.search(code))), index))
    if ran:
        return [index for *_, index in sorted(ranked)[:limit]]
    return sorted(index for *_, index in sorted(ranked)[:limit])


def _statement_scores(node: ast.AST, offset: int, scores: dict[int, float]) -> dict[int, float]:
    """``scores`` by line relative to ``node`` (parsed from the definition alone, ``offset``
    lines into its file), each line of a statement's header given its first line's score."""
    owner: dict[int, int] = {}
    for inner in ast.walk(node):  # breadth first: an inner statement's lines overwrite its parent's
        if isinstance(inner, ast.stmt) and inner is not node:
            body = getattr(inner, "body", None)
            last = body[0].lineno - 1 if isinstance(body, list) and body and isinstance(body[0], ast.stmt) else (inner.end_lineno or inner.lineno)
            for relative in range(inner.lineno, max(inner.lineno, last) + 1):
                owner[relative] = inner.lineno
    ran = {}
    for relative, head in owner.items():
        score = max(scores.get(relative + offset, 0.0), scores.get(head + offset, 0.0))
        if score > 0:
            ran[relative] = score
    return ran
