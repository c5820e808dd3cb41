"""Diffs for the TUI: a checkpoint's step (git, between two commits), rendered unified or
side by side. The commits come from the events (``Checkpoint.commit``, the session's base
commit), so this reads the repository the run recorded and nothing of the run's internals."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rich.markup import escape

__all__ = ["step_diff", "session_diff", "render_unified", "split_rows", "render_split"]


def _git_diff(repo: str | Path, old: str, new: str) -> str:
    if not repo or not old or not new:
        return ""
    proc = subprocess.run(["git", "diff", "--no-color", old, new, "--"], cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"(git diff failed: {proc.stderr.strip()})"
    return proc.stdout


def step_diff(repo: str | Path, previous: str, commit: str) -> str:
    """What one step changed: the diff from the previous checkpoint (or the base) to its own."""
    return _git_diff(repo, previous, commit) or "(this step changed no files)"


def session_diff(repo: str | Path, base: str, branch: str) -> str:
    """What the whole session changed: its base commit to its branch."""
    return _git_diff(repo, base, branch) or "(no changes since the session started)"


_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"), ("diff ", "bold yellow"))


def _style(line: str) -> str:
    for prefix, style in _STYLES:
        if line.startswith(prefix):
            return style
    return ""


def render_unified(text: str, limit: int | None = None) -> str:
    """Rich markup for a unified diff, the first ``limit`` lines (the rest is counted)."""
    lines = text.splitlines()
    shown = lines if limit is None else lines[:limit]
    out = []
    for line in shown:
        style = _style(line)
        out.append(f"[{style}]{escape(line)}[/]" if style else escape(line))
    if limit is not None and len(lines) > limit:
        out.append(f"[dim]… {len(lines) - limit} more lines (/diff shows it all)[/]")
    return "\n".join(out)


def split_rows(text: str) -> list[tuple[str, str]]:
    """A unified diff as (old, new) rows: removed lines on the left, added on the right,
    paired up within each run of changes; context on both sides; headers across."""
    rows: list[tuple[str, str]] = []
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            rows.append(("-" + removed[i] if i < len(removed) else "", "+" + added[i] if i < len(added) else ""))
        removed.clear()
        added.clear()

    for line in text.splitlines():
        if line.startswith(("diff ", "index ", "+++", "---", "@@")):
            flush()
            rows.append((line, line))
        elif line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
        else:
            flush()
            rows.append((line, line))
    flush()
    return rows


def render_split(text: str, width: int) -> str:
    """Rich markup for the side-by-side view, each side ``width // 2`` columns."""
    half = max(10, width // 2 - 2)
    out = []
    for old, new in split_rows(text):
        left = old[:half].ljust(half)
        right = new[:half]
        ls, rs = _style(old), _style(new)
        left = f"[{ls}]{escape(left)}[/]" if ls else escape(left)
        right = f"[{rs}]{escape(right)}[/]" if rs else escape(right)
        out.append(f"{left} │ {right}")
    return "\n".join(out)
