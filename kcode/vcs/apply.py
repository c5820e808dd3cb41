"""Bring a run's result into the user's working tree with a 3-way merge per file.

For each file the run changed: base = the run's start snapshot, theirs = the run's result,
ours = the user's file now (they may have kept working). Untouched files take the result;
files both sides changed are merged with ``git merge-file``; a conflict leaves markers in
the file and is reported, never silently resolved. The user's index and branch are not
touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kcode.vcs.git import git

__all__ = ["ApplyReport", "apply_result"]


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)  # took the run's version
    merged: list[str] = field(default_factory=list)  # both changed, merged cleanly
    unchanged: list[str] = field(default_factory=list)  # already identical
    conflicts: list[str] = field(default_factory=list)  # needs the user's attention
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts


def _blob(repo: Path, commit: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "cat-file", "blob", f"{commit}:{path}"], cwd=repo, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def _mode(repo: Path, commit: str, path: str) -> str:
    out = str(git(["ls-tree", commit, "--", path], repo)).split()
    return out[0] if out else "100644"


def _write(path: Path, data: bytes | None, mode: str = "100644") -> None:
    if data is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode == "100755":
        path.chmod(path.stat().st_mode | 0o111)


def _merge(ours: bytes, base: bytes, theirs: bytes) -> tuple[bytes, int]:
    with tempfile.TemporaryDirectory(prefix="kcode-merge-") as tmp:
        files = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            file = os.path.join(tmp, name)
            with open(file, "wb") as handle:
                handle.write(data)
            files.append(file)
        proc = subprocess.run(
            ["git", "merge-file", "-p", "-L", "yours", "-L", "start", "-L", "kcode", *files],
            capture_output=True,
        )
    if proc.returncode < 0 or proc.returncode > 127:
        raise OSError(proc.stderr.decode(errors="replace"))
    return proc.stdout, proc.returncode


def apply_result(repo: Path, base: str, result: str) -> ApplyReport:
    report = ApplyReport()
    names = str(git(["diff", "--name-only", "--no-renames", "-z", base, result], repo)).split("\x00")
    for name in (n for n in names if n):
        target = repo / name
        base_data = _blob(repo, base, name)
        theirs = _blob(repo, result, name)
        ours = target.read_bytes() if target.is_file() else None
        if ours == theirs:
            report.unchanged.append(name)
        elif ours == base_data:
            _write(target, theirs, _mode(repo, result, name) if theirs is not None else "100644")
            report.applied.append(name)
        elif theirs is None or ours is None:
            side = "kcode deleted it and you changed it" if theirs is None else "you deleted it and kcode changed it"
            report.conflicts.append(name)
            report.notes.append(f"{name}: {side}; left as it is")
        elif b"\x00" in (ours + theirs + (base_data or b""))[:1_000_000]:
            report.conflicts.append(name)
            report.notes.append(f"{name}: binary file changed on both sides; left as it is")
        else:
            merged, conflicts = _merge(ours, base_data or b"", theirs)
            target.write_bytes(merged)
            if conflicts:
                report.conflicts.append(name)
                report.notes.append(f"{name}: {conflicts} conflicting hunk(s), marked with <<<<<<< yours / >>>>>>> kcode")
            else:
                report.merged.append(name)
    return report
