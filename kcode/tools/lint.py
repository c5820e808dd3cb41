"""Lint-on-edit for Python: a syntax check (the edit is reverted when it fails) and the fatal
pyflakes problems (reported with the edit, never reverted: the next edit may fix them).

The fatal codes are Aider's: undefined names (F821), a local used before assignment (F823),
duplicate arguments (F831), misplaced ``__future__`` imports (F404/F407), ``break``/
``continue`` outside a loop (F701/F702), ``yield``/``return`` outside a function (F704/F706).
Only problems the edit introduced are reported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pyflakes import checker, messages

from kcode.errors import ToolError

__all__ = ["syntax_error", "fatal_problems", "new_fatal_problems", "check_python_edit"]

_FATAL = tuple(
    getattr(messages, name)
    for name in (
        "UndefinedName",
        "UndefinedLocal",
        "DuplicateArgument",
        "LateFutureImport",
        "FutureFeatureNotDefined",
        "BreakOutsideLoop",
        "ContinueOutsideLoop",
        "YieldOutsideFunction",
        "ReturnOutsideFunction",
    )
    if hasattr(messages, name)
)


def syntax_error(source: str, filename: str) -> str | None:
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        where = f"line {error.lineno}" + (f", column {error.offset}" if error.offset else "")
        line = (error.text or "").rstrip("\n")
        return f"{error.msg} ({where})" + (f"\n    {line}" if line else "")
    except ValueError as error:  # e.g. NUL bytes
        return str(error)
    return None


def fatal_problems(source: str, filename: str) -> list[tuple[str, int, str]]:
    """(kind and arguments, line, message) for each fatal pyflakes problem; [] if unparsable."""
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError):
        return []
    found = []
    for message in checker.Checker(tree, filename=filename).messages:
        if isinstance(message, _FATAL):
            key = type(message).__name__ + repr(message.message_args)
            found.append((key, message.lineno, message.message % message.message_args))
    return sorted(found, key=lambda item: item[1])


def new_fatal_problems(before: str | None, after: str, filename: str) -> list[str]:
    """Fatal problems in ``after`` that ``before`` did not have, as 'line N: message'."""
    old = {key for key, _, _ in fatal_problems(before, filename)} if before is not None else set()
    return [f"line {line}: {text}" for key, line, text in fatal_problems(after, filename) if key not in old]


def check_python_edit(path: Path, shown: str, before: str | None, after: str) -> str:
    """Refuse (raise) an edit that breaks Python syntax; describe new fatal pyflakes problems."""
    if path.suffix != ".py":
        return ""
    error = syntax_error(after, shown)
    if error and (before is None or syntax_error(before, shown) is None):
        raise ToolError(
            f"{shown}: the change was reverted because it leaves a syntax error: {error}\n"
            "Fix the text (indentation, brackets, quotes) and try again."
        )
    problems = new_fatal_problems(before, after, shown)
    if not problems:
        return ""
    return "\nWarning: the file now has problems that will fail at run time:\n" + "\n".join(f"  {p}" for p in problems)
