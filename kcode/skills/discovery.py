"""Where skills are found, and which one wins when two share a name.

- the repository's ``.kcode/skills``, ``.agents/skills`` and ``.claude/skills`` — only when
  the repository is trusted (``kcode trust``): a skill is instructions the model follows,
  and a clone's are its author's, not the user's;
- the user's ``config_dir()/skills`` (``~/.config/kcode/skills``) and
  ``agents_dir()/skills`` (``~/.agents/skills``).

Each skill is a folder directly inside one of them. The first folder of that order holding a
name wins: the project's over the user's. An invalid skill is skipped and reported
(:class:`SkillProblem`), never fatal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kcode.errors import SkillError
from kcode.paths import agents_dir, config_dir
from kcode.skills.format import SKILL_FILE, Skill, load_skill
from kcode.trust import TRUST_HINT, is_trusted

__all__ = [
    "PROJECT_SKILL_DIRS",
    "SkillProblem",
    "SkillSet",
    "project_skill_dirs",
    "user_skill_dirs",
    "discover_skills",
]

PROJECT_SKILL_DIRS = (".kcode/skills", ".agents/skills", ".claude/skills")


@dataclass(frozen=True)
class SkillProblem:
    """An invalid skill that was skipped: the file (or folder) and what is wrong with it."""

    path: Path
    message: str  # names the path

    def __str__(self) -> str:
        return f"skipped invalid skill: {self.message}"


@dataclass
class SkillSet:
    """What discovery found: the skills (project first, then user; by name within each),
    the invalid ones, the ones a same-named skill shadows, and the project's skill folders
    that were not read because the repository is not trusted."""

    skills: list[Skill] = field(default_factory=list)
    problems: list[SkillProblem] = field(default_factory=list)
    shadowed: list[tuple[Skill, Skill]] = field(default_factory=list)  # (hidden, the one that wins)
    untrusted: list[Path] = field(default_factory=list)

    def get(self, name: str) -> Skill | None:
        return next((skill for skill in self.skills if skill.name == name), None)

    @property
    def names(self) -> list[str]:
        return [skill.name for skill in self.skills]

    def notices(self) -> list[str]:
        """One line per thing a user should hear: invalid skills, untrusted folders."""
        lines = [str(problem) for problem in self.problems]
        for folder in self.untrusted:
            lines.append(f"{folder} holds skills, but the repository is not trusted, so they are not loaded; {TRUST_HINT}")
        return lines


def project_skill_dirs(root: Path) -> list[Path]:
    return [root / relative for relative in PROJECT_SKILL_DIRS]


def user_skill_dirs() -> list[Path]:
    return [config_dir() / "skills", agents_dir() / "skills"]


def _scan(base: Path, source: str, found: SkillSet, seen: dict[str, Skill]) -> None:
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        found.problems.append(SkillProblem(base, f"{base}: cannot be listed: {error.strerror or error}"))
        return
    for folder in entries:
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if not (folder / SKILL_FILE).is_file():
            found.problems.append(SkillProblem(folder, f"{folder}: no {SKILL_FILE} in this folder of {base}"))
            continue
        try:
            skill = load_skill(folder, source, base)
        except SkillError as error:
            found.problems.append(SkillProblem(folder / SKILL_FILE, str(error)))
            continue
        winner = seen.get(skill.name)
        if winner is not None:
            found.shadowed.append((skill, winner))
            continue
        seen[skill.name] = skill
        found.skills.append(skill)


def discover_skills(root: Path | None, *, trusted: bool | None = None, user_dirs: Sequence[Path] | None = None) -> SkillSet:
    """The skills for a run in the repository at ``root`` (``None``: the user's only).

    ``trusted``: whether the repository's own skills are read (default :func:`is_trusted`);
    ``user_dirs``: the user's skill folders (default :func:`user_skill_dirs`)."""
    found = SkillSet()
    seen: dict[str, Skill] = {}
    if root is not None:
        trusted = is_trusted(root) if trusted is None else trusted
        for base in project_skill_dirs(root):
            if not trusted:
                if base.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in base.iterdir()):
                    found.untrusted.append(base)
                continue
            _scan(base, "project", found, seen)
    for base in user_skill_dirs() if user_dirs is None else user_dirs:
        _scan(Path(base), "user", found, seen)
    order = {"project": 0, "user": 1}
    found.skills.sort(key=lambda skill: (order.get(skill.source, 2), skill.name))
    return found
