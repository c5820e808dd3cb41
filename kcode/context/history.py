"""When each file last changed in git: the pack puts the files that change least first.

The pack is a prompt prefix whose KV state is cached, so after a commit the text before
the first changed file can be restored. One ``git log --name-only`` pass gives every file's
last commit time; it is kept per repository and HEAD (in memory and in the tag cache), and
when HEAD moves forward only the new commits are read. HEAD is read from the ``.git``
files directly, so an unchanged HEAD costs no subprocess.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["read_head", "commit_times", "NEWEST", "TRUNCATED"]

NEWEST = 1 << 62  # the key of files git has no commit for (untracked, or not a git tree)
TRUNCATED = "\0truncated"  # a key of commit_times' result: the history was longer than MAX_COMMITS
MAX_COMMITS = 20_000  # a first pass reads at most this many commits; files older count as oldest


def _git_dir(root: Path) -> Path | None:
    dot = root / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if text.startswith("gitdir:"):
        path = Path(text[7:].strip())
        return path if path.is_absolute() else (root / path).resolve()
    return None


def read_head(root: Path) -> str | None:
    """The commit HEAD points at, read from the files under ``.git`` (worktrees, packed
    refs and detached HEADs included); None outside git or on an unborn branch."""
    git_dir = _git_dir(root)
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head[4:].strip()
    common = git_dir
    try:
        common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    except OSError:
        pass
    for base in dict.fromkeys((git_dir, common)):
        try:
            return (base / ref).read_text(encoding="utf-8").strip() or None
        except OSError:
            continue
    try:
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref) and not line.startswith(("#", "^")):
                return line.split(" ", 1)[0]
    except OSError:
        pass
    return None


def _log(root: Path, revisions: list[str]) -> dict[str, int] | None:
    """Each path's newest commit time among ``revisions`` (a ``git log`` range, at most
    :data:`MAX_COMMITS` commits: a huge history costs a bounded first pass)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "-c", "core.quotepath=off", "log", "--format=%x01%ct", "--name-only",
             "--no-renames", f"--max-count={MAX_COMMITS}", *revisions, "--"],
            capture_output=True, timeout=300, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    times: dict[str, int] = {}
    current = commits = 0
    for raw in result.stdout.split(b"\n"):
        if raw.startswith(b"\x01"):
            current = int(raw[1:] or 0)
            commits += 1
        elif raw and (name := os.fsdecode(raw)) not in times:
            times[name] = current
    if commits >= MAX_COMMITS:
        times[TRUNCATED] = 1  # files not seen are older than every commit read, not new
    return times


def commit_times(root: Path, head: str, previous: tuple[str, dict[str, int]] | None = None) -> dict[str, int]:
    """Last commit time (seconds) of every path in the history up to ``head``; with
    ``previous`` (an earlier HEAD and its times) only the commits since then are read,
    when that HEAD is an ancestor. Empty when git fails."""
    if previous is not None and previous[0] != head:
        old, old_times = previous
        ancestor = subprocess.run(
            ["git", "-C", str(root), "merge-base", "--is-ancestor", old, head], capture_output=True, timeout=60
        )
        if ancestor.returncode == 0:
            newer = _log(root, [f"{old}..{head}"])
            if newer is not None:
                return {**old_times, **newer}
    elif previous is not None:
        return previous[1]
    return _log(root, [head]) or {}
