"""``read_file``, ``list_files`` and ``write_file``.

``write_file`` refuses to replace most of an existing file unless the model asks for it: a
file of ``GUARDED_LINES`` lines or more whose new content keeps less than half of its
non-blank lines (``replaces_most``) is only overwritten when the model has seen all of it in
this session (packed whole, read from the first line to the last, or written it) and passes
``overwrite: true``; otherwise the error points to ``edit_file``. Small models otherwise "fix"
an 890-line module by writing a 3-line one, or by writing the one function they read over it.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections import Counter
from pathlib import Path

from pydantic import Field

from kcode.context.files import generated_reason
from kcode.errors import ToolError
from kcode.tools.base import Params, Tool, ToolContext, ToolResult
from kcode.tools.lint import check_python_edit
from kcode.tools.paths import display_path, is_binary, missing_file_hint, resolve_path

__all__ = [
    "ReadFileTool",
    "ListFilesTool",
    "WriteFileTool",
    "read_text_file",
    "refuse_generated",
    "replaces_most",
    "seen_files",
    "whole_files",
    "GUARDED_LINES",
]

_MAX_LINE_CHARS = 2000
_MAX_LISTED = 500
GUARDED_LINES = 20  # a file shorter than this may be rewritten freely


def read_text_file(path: Path, shown: str) -> str:
    """Read a UTF-8 (or mostly UTF-8) text file, refusing binaries with a clear error."""
    if not path.exists():
        raise ToolError(f"{shown}: no such file{missing_file_hint(path)}")
    if path.is_dir():
        raise ToolError(f"{shown}: is a directory (use list_files)")
    data = path.read_bytes()
    if is_binary(data):
        raise ToolError(f"{shown}: binary file ({len(data)} bytes); it cannot be shown as text")
    return data.decode("utf-8", errors="replace")


def refuse_generated(shown: str, head: str, task: str | None) -> None:
    """Refuse to edit a generated file (egg-info, lock files, minified bundles, a "DO NOT
    EDIT" header; the pack's own rule) unless the task names it by path or file name."""
    reason = generated_reason(shown, head)
    if reason is None:
        return
    if task:
        name = shown.rsplit("/", 1)[-1]
        if shown in task or re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", task):
            return
    what = "a minified bundle" if reason == "minified" else "made by a tool, not by hand"
    raise ToolError(
        f"{shown}: generated file; edit its source instead ({what}: a change here is lost when it is "
        "regenerated). Find the file it is built from, e.g. with search."
    )


class ReadFileParams(Params):
    path: str = Field(description="File path, relative to the repository root.")
    offset: int = Field(default=1, ge=1, description="First line to show (1-based).")
    limit: int = Field(default=400, ge=1, le=5000, description="Number of lines to show.")


class ReadFileTool(Tool):
    name = "read_file"
    Params = ReadFileParams

    def run(self, params: ReadFileParams, ctx: ToolContext) -> ToolResult:
        path = resolve_path(ctx.root, params.path)
        shown = display_path(ctx.root, path)
        lines = read_text_file(path, shown).splitlines()
        ctx.state.seen_files.add(shown)
        total = len(lines)
        if total == 0:
            return ToolResult(f"{shown}: empty file (0 lines)", data={"path": shown, "total_lines": 0})
        if params.offset > total:
            raise ToolError(f"{shown}: offset {params.offset} is past the end (the file has {total} lines)")
        end = min(total, params.offset + params.limit - 1)
        if params.offset == 1 and end == total:
            ctx.state.whole_files.add(shown)
        width = len(str(end))
        body = []
        for number in range(params.offset, end + 1):
            line = lines[number - 1]
            if len(line) > _MAX_LINE_CHARS:
                line = line[:_MAX_LINE_CHARS] + f"… [{len(line) - _MAX_LINE_CHARS} more characters]"
            body.append(f"{number:>{width}}\t{line}")
        header = f"{shown} (lines {params.offset}-{end} of {total})"
        if end < total:
            header += f"; continue with offset={end + 1}"
        return ToolResult(header + "\n" + "\n".join(body), data={"path": shown, "total_lines": total})


class ListFilesParams(Params):
    path: str = Field(default=".", description="Directory to list, relative to the repository root.")
    pattern: str | None = Field(default=None, description="Optional glob on the relative path, e.g. '*.py' or 'src/**/test_*'.")


def _git_files(root: Path, directory: Path) -> list[str] | None:
    """Tracked and untracked-but-not-ignored files below ``directory`` (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", str(directory)],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    files = sorted({name for name in out.decode("utf-8", errors="replace").split("\x00") if name})
    return [name for name in files if (root / name).exists()]


class ListFilesTool(Tool):
    name = "list_files"
    Params = ListFilesParams

    def run(self, params: ListFilesParams, ctx: ToolContext) -> ToolResult:
        directory = resolve_path(ctx.root, params.path or ".")
        if not directory.is_dir():
            raise ToolError(f"{params.path}: not a directory")
        root = ctx.root.resolve()
        files = _git_files(root, directory)
        if files is None:
            files = sorted(
                p.relative_to(root).as_posix()
                for p in directory.rglob("*")
                if p.is_file() and ".git" not in p.relative_to(root).parts
            )
        if params.pattern:
            pattern = params.pattern
            files = [f for f in files if fnmatch.fnmatch(f, pattern) or fnmatch.fnmatch(Path(f).name, pattern)]
        total = len(files)
        if total == 0:
            return ToolResult("no files match", data={"count": 0})
        shown = files[:_MAX_LISTED]
        text = "\n".join(shown)
        if total > _MAX_LISTED:
            text += f"\n[... {total - _MAX_LISTED} more files; narrow with path= or pattern=]"
        return ToolResult(f"{total} files\n{text}", data={"count": total})


class WriteFileParams(Params):
    path: str = Field(description="Path relative to the repository root; parent directories are created.")
    content: str = Field(description="The complete new content of the file.")
    overwrite: bool = False  # the tool's description says when it is needed (the fixed prompt is a budget)


def replaces_most(before: str, after: str) -> tuple[bool, int, int]:
    """(whether ``after`` replaces most of ``before``, the non-blank lines of ``before``, how
    many of them ``after`` keeps). Most: ``before`` has ``GUARDED_LINES`` lines or more and
    less than half of its non-blank lines (compared without surrounding spaces, each as
    often as it occurs) are still there."""
    old = [line.strip() for line in before.splitlines() if line.strip()]
    if len(before.splitlines()) < GUARDED_LINES or not old:
        return False, len(old), len(old)
    remaining = Counter(line.strip() for line in after.splitlines() if line.strip())
    kept = 0
    for line in old:
        if remaining[line] > 0:
            remaining[line] -= 1
            kept += 1
    return kept * 2 < len(old), len(old), kept


_WHOLE_FILE_TAG = re.compile(r'<file path="([^"]+)">')  # a whole file in the pack (an excerpt has more attributes)
_WHOLE_READ = re.compile(r"(\S+) \(lines 1-(\d+) of \2\)\n")  # read_file's header, for all of a file


def _packed_whole(messages: list[dict]) -> set[str]:
    return {path for message in messages if message.get("role") == "system" and isinstance(message.get("content"), str)
            for path in _WHOLE_FILE_TAG.findall(message["content"])}


def _named_by_calls(messages: list[dict], root: Path, tools: tuple[str, ...]) -> set[str]:
    """The shown paths that the conversation's calls to ``tools`` named."""
    named = set()
    for message in messages:
        for call in message.get("tool_calls") or []:
            path = (call.get("arguments") or {}).get("path") if call.get("name") in tools else None
            if isinstance(path, str):
                try:
                    named.add(display_path(root, resolve_path(root, path, for_write=True)))
                except ToolError:
                    continue
    return named


def seen_files(messages: list[dict], root: Path) -> set[str]:
    """The files the model has seen: those packed whole into the system prompt, and those the
    conversation's ``read_file`` and ``write_file`` calls named, as shown paths (what
    ``edit_file`` and ``write_file`` need before they change a file; a resumed session's too)."""
    return _packed_whole(messages) | _named_by_calls(messages, root, ("read_file", "write_file"))


def whole_files(messages: list[dict], root: Path) -> set[str]:
    """The files a resumed conversation has seen whole: packed whole into the system prompt,
    read from the first line to the last (the ``read_file`` result's header says so), or
    written by ``write_file``."""
    read_whole = {read.group(1) for message in messages if message.get("role") == "tool" and isinstance(message.get("content"), str)
                  and (read := _WHOLE_READ.match(message["content"]))}
    return _packed_whole(messages) | read_whole | _named_by_calls(messages, root, ("write_file",))


class WriteFileTool(Tool):
    name = "write_file"
    Params = WriteFileParams
    may_change_files = True

    def run(self, params: WriteFileParams, ctx: ToolContext) -> ToolResult:
        path = resolve_path(ctx.root, params.path, for_write=True)
        shown = display_path(ctx.root, path)
        if path.is_dir():
            raise ToolError(f"{shown}: is a directory")
        existed = path.exists()
        before = path.read_text(encoding="utf-8", errors="replace") if existed else None
        refuse_generated(shown, before or "", ctx.task)
        if before is not None:
            _refuse_destructive(shown, before, params, ctx.state.whole_files)
        problems = check_python_edit(path, shown, before, params.content)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(params.content, encoding="utf-8")
        ctx.state.seen_files.add(shown)
        ctx.state.whole_files.add(shown)
        lines = params.content.count("\n") + (0 if params.content.endswith("\n") or not params.content else 1)
        verb = "overwrote" if existed else "created"
        return ToolResult(f"{verb} {shown} ({lines} lines){problems}", data={"path": shown, "created": not existed})


def _refuse_destructive(shown: str, before: str, params: WriteFileParams, seen: set[str]) -> None:
    most, old, kept = replaces_most(before, params.content)
    if not most or (params.overwrite and shown in seen):
        return
    missing = []
    if shown not in seen:
        total = len(before.splitlines())
        missing.append(f"read it first with read_file(path={shown!r}), all {total} lines of it")
    if not params.overwrite:
        missing.append("pass overwrite: true")
    raise ToolError(
        f"{shown}: not written: this would replace most of the file (it has {old} non-blank lines; "
        f"the new content keeps {kept}). To change part of a file use edit_file (old -> new) on just "
        f"that part. To really replace the whole file, {' and '.join(missing)}."
    )
