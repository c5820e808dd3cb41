"""``edit_file``: replace an exact snippet, with a whitespace-tolerant retry, a "did you
mean" error quoting the closest region, and a syntax check that reverts broken Python.

A file must have been seen before it is edited (as Claude Code's Edit asks): read with
``read_file``, written with ``write_file``, or packed whole into the prompt. The first edit of
an unseen file is not made; its error shows the lines around where ``old`` matches, and the
file then counts as seen, so the same call made again goes through. Small models otherwise
edit code they have never looked at, with ``old`` text they guessed (renaming a function
because its name matched, changing the wrong function's default)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pydantic import Field

from kcode.errors import ToolError
from kcode.tools.base import Params, Tool, ToolContext, ToolResult
from kcode.tools.files import read_text_file, refuse_generated
from kcode.tools.lint import check_python_edit
from kcode.tools.paths import display_path, resolve_path

__all__ = ["EditFileTool", "apply_edit"]

_CONTEXT_LINES = 3
_UNSEEN_CONTEXT_LINES = 12  # around the match, for the first edit of a file not yet seen


class EditFileParams(Params):
    path: str = Field(description="File to edit, relative to the repository root.")
    old: str = Field(description="The exact text to replace (include enough context to match once).")
    new: str = Field(description="The replacement text.")
    replace_all: bool = Field(default=False, description="Replace every occurrence instead of exactly one.")


@dataclass
class EditOutcome:
    text: str
    first_line: int  # 1-based line where the replacement starts
    new_line_count: int
    count: int
    fuzzy: bool = False


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _exact(text: str, old: str, new: str, replace_all: bool, shown: str) -> EditOutcome | None:
    count = text.count(old)
    if count == 0:
        return None
    if count > 1 and not replace_all:
        lines, start = [], 0
        while (index := text.find(old, start)) != -1 and len(lines) < 10:
            lines.append(str(_line_of(text, index)))
            start = index + 1
        raise ToolError(
            f"{shown}: `old` matches {count} times (at lines {', '.join(lines)}). "
            "Include more surrounding lines so it matches exactly once, or set replace_all=true."
        )
    first = _line_of(text, text.find(old))
    return EditOutcome(text.replace(old, new), first, new.count("\n") + 1, count)


def _fuzzy(text: str, old: str, new: str) -> EditOutcome | None:
    """Match line by line ignoring indentation and trailing blanks; re-indent ``new``."""
    old_lines = old.strip("\n").split("\n")
    file_lines = text.split("\n")
    wanted = [line.strip() for line in old_lines]
    if not any(wanted):
        return None
    hits = [
        start
        for start in range(len(file_lines) - len(old_lines) + 1)
        if [line.strip() for line in file_lines[start : start + len(old_lines)]] == wanted
    ]
    if len(hits) != 1:
        return None
    start = hits[0]
    first_old = next(line for line in old_lines if line.strip())
    first_file = file_lines[start + old_lines.index(first_old)]
    old_indent = first_old[: len(first_old) - len(first_old.lstrip())]
    file_indent = first_file[: len(first_file) - len(first_file.lstrip())]
    replacement = []
    for line in new.strip("\n").split("\n"):
        if line.startswith(old_indent):
            line = file_indent + line[len(old_indent) :]
        elif line.strip():
            line = file_indent + line.lstrip()
        replacement.append(line)
    result = file_lines[:start] + replacement + file_lines[start + len(old_lines) :]
    return EditOutcome("\n".join(result), start + 1, len(replacement), 1, fuzzy=True)


def _closest_region(text: str, old: str) -> str:
    file_lines = text.split("\n")
    old_lines = old.strip("\n").split("\n")
    size = max(1, len(old_lines))
    target = "\n".join(line.strip() for line in old_lines)
    best_ratio, best_start = 0.0, 0
    for start in range(max(1, len(file_lines) - size + 1)):
        window = "\n".join(line.strip() for line in file_lines[start : start + size])
        matcher = difflib.SequenceMatcher(None, target, window, autojunk=False)
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    if best_ratio < 0.5:
        return ""
    end = min(len(file_lines), best_start + size)
    # with the lines around it: the model sees the real code it has to copy, and its context
    first, last = max(0, best_start - _CONTEXT_LINES), min(len(file_lines), end + _CONTEXT_LINES)
    numbered = "\n".join(f"{n + 1:>5}{'>' if best_start <= n < end else ' '}\t{file_lines[n]}" for n in range(first, last))
    return (f"Did you mean lines {best_start + 1}-{end} ({best_ratio:.0%} similar; marked >, with the lines around "
            f"them)? Copy `old` from these lines exactly:\n{numbered}")


def apply_edit(text: str, old: str, new: str, *, replace_all: bool = False, shown: str = "file") -> EditOutcome:
    if old == "":
        raise ToolError("`old` is empty; use write_file to create or overwrite a file")
    if old == new:
        raise ToolError("`old` and `new` are identical, so nothing changed: `old` is the text as it is in the file "
                        "now, `new` the corrected text that replaces it")
    outcome = _exact(text, old, new, replace_all, shown) or _fuzzy(text, old, new)
    if outcome is None:
        hint = _closest_region(text, old)
        message = f"{shown}: `old` was not found (exact and whitespace-tolerant matching both failed)."
        raise ToolError(message + ("\n" + hint if hint else " Read the file again and copy the text exactly."))
    return outcome


def _unseen_refusal(text: str, outcome: EditOutcome, old: str, shown: str) -> str:
    """The error for a first edit of a file the model has not seen: where ``old`` matches,
    marked, with the lines around it."""
    lines = text.split("\n")
    first = outcome.first_line
    last = first + max(1, old.strip("\n").count("\n") + 1) - 1
    start, end = max(1, first - _UNSEEN_CONTEXT_LINES), min(len(lines), last + _UNSEEN_CONTEXT_LINES)
    numbered = "\n".join(f"{n:>5}{'>' if first <= n <= last else ' '}\t{lines[n - 1]}" for n in range(start, end + 1))
    where = "`old` matches"
    if outcome.count > 1:
        starts, at = [], text.find(old)
        while at != -1 and len(starts) < 10:
            starts.append(str(_line_of(text, at)))
            at = text.find(old, at + 1)
        where = f"`old` matches {outcome.count} times (at lines {', '.join(starts)}); the first"
    return (
        f"{shown}: not edited: you have not read this file yet, so check the code before changing it. "
        f"Lines {start}-{end} of {len(lines)} ({where} at the lines marked >):\n{numbered}\n"
        "If this is the code that needs the change, call edit_file again with `old` copied exactly from these "
        "lines (without the line numbers); if not, find the right place (search, read_file)."
    )


def _snippet(text: str, first_line: int, line_count: int) -> str:
    lines = text.split("\n")
    start = max(1, first_line - _CONTEXT_LINES)
    end = min(len(lines), first_line + line_count - 1 + _CONTEXT_LINES)
    return "\n".join(f"{n:>5}\t{lines[n - 1]}" for n in range(start, end + 1))


class EditFileTool(Tool):
    name = "edit_file"
    Params = EditFileParams
    may_change_files = True

    def run(self, params: EditFileParams, ctx: ToolContext) -> ToolResult:
        path = resolve_path(ctx.root, params.path, for_write=True)
        shown = display_path(ctx.root, path)
        original = read_text_file(path, shown)
        refuse_generated(shown, original, ctx.task)
        if shown not in ctx.state.seen_files:
            ctx.state.seen_files.add(shown)  # the refusal or the near miss shows the file's lines
            # where `old` matches (every match counted: the view comes before "matches N times")
            found = apply_edit(original, params.old, params.new, replace_all=True, shown=shown)
            raise ToolError(_unseen_refusal(original, found, params.old, shown))
        outcome = apply_edit(original, params.old, params.new, replace_all=params.replace_all, shown=shown)
        problems = check_python_edit(path, shown, original, outcome.text)
        path.write_text(outcome.text, encoding="utf-8")
        how = " (matched ignoring whitespace)" if outcome.fuzzy else ""
        what = f"{outcome.count} occurrences" if outcome.count > 1 else "1 occurrence"
        snippet = _snippet(outcome.text, outcome.first_line, outcome.new_line_count)
        return ToolResult(
            f"edited {shown}: replaced {what}{how}\n{snippet}" + problems,
            data={"path": shown, "replacements": outcome.count, "fuzzy": outcome.fuzzy},
        )
