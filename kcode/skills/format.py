"""The agentskills.io format: a folder holding a ``SKILL.md``, YAML front matter, then Markdown.

Front matter fields (https://agentskills.io/specification)::

    name           required; 1-64 lowercase letters, digits and hyphens, no hyphen at either
                   end nor two in a row; equal to the folder's name
    description    required; 1-1024 characters: what the skill does and when to use it
    license        optional string
    compatibility  optional string, at most 500 characters
    metadata       optional mapping (string keys)
    allowed-tools  optional: space-separated tool names (a YAML list is taken as well)

Other fields (Claude Code's, a team's own) are kept as they are and not checked. The rest of
the file, after the closing ``---``, is the body: the instructions an agent loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kcode.errors import SkillError

__all__ = [
    "SKILL_FILE",
    "NAME_MAX",
    "DESCRIPTION_MAX",
    "COMPATIBILITY_MAX",
    "SKILL_MD_MAX_BYTES",
    "Skill",
    "split_front_matter",
    "front_matter_problems",
    "load_skill",
]

SKILL_FILE = "SKILL.md"
NAME_MAX = 64
DESCRIPTION_MAX = 1024
COMPATIBILITY_MAX = 500
SKILL_MD_MAX_BYTES = 256 * 1024

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)
_EMPTY_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n---[ \t]*(?:\r?\n|\Z)")


@dataclass(frozen=True)
class Skill:
    """A valid skill as discovery found it. ``source``: ``project`` or ``user``; ``base``: the
    skills folder it was found in (``<repo>/.kcode/skills``, ``~/.agents/skills``, ...)."""

    name: str
    description: str
    path: Path  # the skill's folder
    source: str
    base: Path
    front_matter: dict[str, Any] = field(default_factory=dict)  # every field, as written

    @property
    def skill_md(self) -> Path:
        return self.path / SKILL_FILE

    @property
    def allowed_tools(self) -> list[str]:
        value = self.front_matter.get("allowed-tools")
        if isinstance(value, list):
            return [str(item) for item in value]
        return str(value).split() if value else []

    def text(self) -> str:
        """The whole ``SKILL.md``, as it is on disk now."""
        return _read_skill_md(self.skill_md)

    def body(self) -> str:
        """The instructions: ``SKILL.md`` without its front matter."""
        _, body = split_front_matter(self.text(), str(self.skill_md))
        return body.strip()


def split_front_matter(text: str, where: str = SKILL_FILE) -> tuple[dict[str, Any], str]:
    """``(front matter, body)`` of a ``SKILL.md``'s text. Raises :class:`SkillError` (naming
    ``where``) when there is no front matter, or it is not a YAML mapping."""
    empty = _EMPTY_FRONT.match(text)
    match = empty or _FRONT.match(text)
    if match is None:
        raise SkillError(f"{where}: no front matter (the file must start with a '---' line, then YAML, then a '---' line)")
    raw = "" if empty else match.group(1)
    try:
        data = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 2}" if mark is not None else ""  # + the opening '---' line
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SkillError(f"{where}: the front matter is not valid YAML{at}: {problem} (quote values that hold ': ')") from None
    if not isinstance(data, dict):
        raise SkillError(f"{where}: the front matter must be a YAML mapping (name: ..., description: ...), not {type(data).__name__}")
    return data, text[match.end() :]


def front_matter_problems(data: dict[str, Any], folder_name: str | None = None) -> list[str]:
    """What breaks the format's rules in ``data`` (nothing: ``[]``); ``folder_name``: the
    folder the ``SKILL.md`` is in (or will be), which ``name`` must equal."""
    problems = []
    name = data.get("name")
    if name is None or name == "":
        problems.append("name is missing")
    elif not isinstance(name, str):
        problems.append(f"name must be a string, not {type(name).__name__}")
    else:
        if len(name) > NAME_MAX:
            problems.append(f"name {name!r} is {len(name)} characters long; at most {NAME_MAX} are allowed")
        if not _NAME.fullmatch(name):
            problems.append(f"name {name!r} may hold only lowercase letters, digits and hyphens, with no hyphen at the start or end and none doubled")
        if folder_name is not None and name != folder_name:
            problems.append(f"name {name!r} differs from its folder's name {folder_name!r}")
    description = data.get("description")
    if description is None:
        problems.append("description is missing")
    elif not isinstance(description, str):
        problems.append(f"description must be a string, not {type(description).__name__}")
    elif not description.strip():
        problems.append("description is empty")
    elif len(description) > DESCRIPTION_MAX:
        problems.append(f"description is {len(description)} characters long; at most {DESCRIPTION_MAX} are allowed")
    compatibility = data.get("compatibility")
    if compatibility is not None:
        if not isinstance(compatibility, str):
            problems.append("compatibility must be a string")
        elif len(compatibility) > COMPATIBILITY_MAX:
            problems.append(f"compatibility is {len(compatibility)} characters long; at most {COMPATIBILITY_MAX} are allowed")
    if data.get("license") is not None and not isinstance(data["license"], str):
        problems.append("license must be a string")
    metadata = data.get("metadata")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(key, str) for key in metadata)):
        problems.append("metadata must be a mapping with string keys")
    tools = data.get("allowed-tools")
    if tools is not None and not (isinstance(tools, str) or (isinstance(tools, list) and all(isinstance(t, str) for t in tools))):
        problems.append("allowed-tools must be a space-separated string of tool names")
    return problems


def _read_skill_md(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SkillError(f"{path}: no such file (a skill is a folder holding a {SKILL_FILE})") from None
    except OSError as error:
        raise SkillError(f"{path}: cannot be read: {error.strerror or error}") from None
    if len(data) > SKILL_MD_MAX_BYTES:
        raise SkillError(f"{path}: {len(data)} bytes; a {SKILL_FILE} may have at most {SKILL_MD_MAX_BYTES} (move details to references/)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SkillError(f"{path}: not UTF-8 text (byte {error.start})") from None


def load_skill(folder: Path, source: str, base: Path | None = None) -> Skill:
    """The skill in ``folder``; :class:`SkillError` naming its ``SKILL.md`` and every problem."""
    path = folder / SKILL_FILE
    data, _ = split_front_matter(_read_skill_md(path), str(path))
    problems = front_matter_problems(data, folder.name)
    if problems:
        raise SkillError(f"{path}: " + "; ".join(problems))
    return Skill(name=data["name"], description=data["description"].strip(), path=folder, source=source,
                 base=base if base is not None else folder.parent, front_matter=data)  # fmt: skip
