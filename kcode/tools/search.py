"""``search``: regex search over the work tree (ripgrep when installed, Python otherwise)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

from pydantic import Field

from kcode.errors import ToolError
from kcode.tools.base import Params, Tool, ToolContext, ToolResult
from kcode.tools.files import _git_files
from kcode.tools.paths import is_binary, resolve_path

__all__ = ["SearchTool", "MAX_MATCHES"]

MAX_MATCHES = 100
_MAX_LINE_CHARS = 300


class SearchParams(Params):
    pattern: str = Field(description="Regular expression (Rust/Python syntax) to search for.")
    path: str = Field(default=".", description="File or directory to search, relative to the repository root.")
    glob: str | None = Field(default=None, description="Only search files whose path matches this glob, e.g. '*.py'.")


def _ripgrep(rg: str, root: Path, target: Path, pattern: str, glob: str | None) -> list[str]:
    argv = [rg, "--line-number", "--no-heading", "--color", "never", "--max-columns", str(_MAX_LINE_CHARS)]
    if glob:
        argv += ["--glob", glob]
    argv += ["--regexp", pattern]
    if target != root:  # with no path ripgrep searches the cwd and prints paths without "./"
        argv += ["--", str(target.relative_to(root))]
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, errors="replace")
    if proc.returncode == 2:
        raise ToolError(f"search failed: {proc.stderr.strip() or 'invalid pattern'}")
    return [line for line in proc.stdout.splitlines() if line]


def _python_search(root: Path, target: Path, pattern: str, glob: str | None) -> list[str]:
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ToolError(f"invalid regular expression: {error}") from error
    if target.is_file():
        files = [target.relative_to(root).as_posix()]
    else:
        files = _git_files(root, target) or sorted(
            p.relative_to(root).as_posix() for p in target.rglob("*") if p.is_file() and ".git" not in p.parts
        )
    matches = []
    for name in files:
        if glob and not (fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(Path(name).name, glob)):
            continue
        data = (root / name).read_bytes()
        if is_binary(data):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                matches.append(f"{name}:{number}:{line[:_MAX_LINE_CHARS]}")
    return matches


class SearchTool(Tool):
    name = "search"
    Params = SearchParams

    def run(self, params: SearchParams, ctx: ToolContext) -> ToolResult:
        root = ctx.root.resolve()
        target = resolve_path(root, params.path or ".")  # "" (small models send it): the whole repository
        if not target.exists():
            raise ToolError(f"{params.path}: no such file or directory")
        rg = shutil.which("rg")
        if rg:
            matches = _ripgrep(rg, root, target, params.pattern, params.glob)
        else:
            matches = _python_search(root, target, params.pattern, params.glob)
        total = len(matches)
        data = {"matches": total, "engine": "ripgrep" if rg else "python"}
        if total == 0:
            return ToolResult(f"no matches for /{params.pattern}/", data=data)
        if total > MAX_MATCHES:
            head = "\n".join(matches[:MAX_MATCHES])
            return ToolResult(
                f"{total} matches; showing the first {MAX_MATCHES}. Narrow the search with a more specific "
                f"pattern, a path or a glob.\n{head}",
                data=data,
            )
        return ToolResult(f"{total} matches\n" + "\n".join(matches), data=data)
