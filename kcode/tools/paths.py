"""Resolve a path the model gave against the work tree, refusing anything outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kcode.errors import PathOutsideRepo, ToolError

__all__ = ["resolve_path", "display_path", "is_binary", "missing_file_hint"]


def resolve_path(root: Path, path: str, *, for_write: bool = False) -> Path:
    """Return the real path of ``path`` (relative to ``root`` or absolute inside it).

    Symlinks are resolved first, so a link pointing outside the repository is refused too.
    Writes into ``.git`` are refused.
    """
    if not path or "\x00" in path:
        raise ToolError("a non-empty path is required")
    root = root.resolve()
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        hint = _same_name_hint(root, Path(path).name)
        raise PathOutsideRepo(f"{path}: outside the repository ({root}); only files inside it can be used, by paths relative to its root{hint}")
    if for_write:
        relative = resolved.relative_to(root)
        if relative.parts and relative.parts[0] == ".git":
            raise ToolError(f"{path}: the .git directory cannot be written")
    return resolved


def _same_name_hint(root: Path, name: str) -> str:
    """Models often invent absolute paths (/path/to/x.py): point at the repo's files of that name."""
    if not name or name in (".", ".."):
        return ""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", f"*{name}"], cwd=root, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    matches = sorted(p for p in listed.decode("utf-8", errors="replace").split("\x00") if p and Path(p).name == name)
    return f". Did you mean: {', '.join(matches[:5])}?" if matches else ""


def display_path(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def is_binary(data: bytes) -> bool:
    """A NUL byte in the first 8 KiB, as git decides."""
    return b"\x00" in data[:8192]


def missing_file_hint(path: Path) -> str:
    """For a file that does not exist (models guess paths: ``pkg/ordinal.py`` for a function in
    ``pkg/__init__.py``): the files of its folder when that exists, else the tracked paths
    closest to it. "" when git cannot say."""
    import difflib

    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True, timeout=10)
        if top.returncode != 0:
            return ""
        root = Path(top.stdout.strip()).resolve()
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    tracked = [p for p in listed.decode("utf-8", errors="replace").split("\x00") if p]
    try:
        wanted = path.resolve().relative_to(root).as_posix()
    except ValueError:
        return ""
    here = path.parent.resolve()
    if here.exists() and here != root:
        prefix = here.relative_to(root).as_posix() + "/"
        siblings = sorted(p for p in tracked if p.startswith(prefix) and "/" not in p[len(prefix):])
        if siblings:
            more = f" (and {len(siblings) - 12} more)" if len(siblings) > 12 else ""
            return f". Files in {prefix}: {', '.join(siblings[:12])}{more}"
    close = difflib.get_close_matches(wanted, tracked, n=5, cutoff=0.5)
    return f". Did you mean: {', '.join(close)}?" if close else ""
