"""The files of a skill's folder (``scripts/``, ``references/``, ...), read only from inside it."""

from __future__ import annotations

from pathlib import Path

from kcode.errors import SkillError
from kcode.skills.format import Skill

__all__ = ["SKILL_FILE_MAX_BYTES", "skill_files", "resolve_skill_file", "read_skill_file"]

SKILL_FILE_MAX_BYTES = 256 * 1024
_LISTED = 200


def skill_files(skill: Skill, below: Path | None = None) -> list[str]:
    """The files of the skill's folder (or of ``below``, inside it), relative to the folder."""
    folder = skill.path.resolve()
    start = below or folder
    names = []
    for path in sorted(start.rglob("*")):
        relative = path.relative_to(start)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if not _inside(path.resolve(), folder):  # a link out of the folder is not the skill's
            continue
        names.append(path.relative_to(folder).as_posix() if below is None else (below.relative_to(folder) / relative).as_posix())
    return names


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def resolve_skill_file(skill: Skill, relative: str) -> Path:
    """The real path of ``relative`` in the skill's folder; refuses absolute paths and any
    path (``..``, a symbolic link) that leads out of the folder."""
    if not relative or "\x00" in relative:
        raise SkillError("a file name inside the skill's folder is required")
    if Path(relative).is_absolute() or relative.startswith("~"):
        raise SkillError(f"{relative}: give a path relative to the skill's folder, e.g. references/guide.md")
    folder = skill.path.resolve()
    resolved = (folder / relative).resolve()
    if not _inside(resolved, folder):
        raise SkillError(f"{relative}: outside the folder of skill {skill.name!r}; only its own files can be read")
    return resolved


def read_skill_file(skill: Skill, relative: str) -> str:
    """A text file of the skill's folder, or the listing of a folder inside it."""
    path = resolve_skill_file(skill, relative)
    if path.is_dir():
        names = skill_files(skill, path)
        shown = "\n".join(names[:_LISTED]) + (f"\n[... {len(names) - _LISTED} more]" if len(names) > _LISTED else "")
        return f"{relative}: a folder of skill {skill.name!r}, {len(names)} files\n{shown}".rstrip()
    if not path.is_file():
        known = ", ".join(skill_files(skill)[:30]) or "none besides SKILL.md"
        raise SkillError(f"{relative}: no such file in skill {skill.name!r} (its files: {known})")
    size = path.stat().st_size
    if size > SKILL_FILE_MAX_BYTES:
        raise SkillError(f"{relative}: {size} bytes, more than the {SKILL_FILE_MAX_BYTES} a skill's file may be read with")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise SkillError(f"{relative}: a binary file ({size} bytes); only text files of a skill can be read")
    return data.decode("utf-8", errors="replace")
