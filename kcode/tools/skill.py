"""``skill``: load a skill's instructions, or a file of its folder (kcode.skills).

The tool holds the skills discovery found when the run started; it is in the tool set only
when there is at least one (``default_tools(skills)``), and the catalog of them is in the
prompt's repository part (kcode.agent.prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from kcode.errors import SkillError, ToolError
from kcode.skills import Skill, read_skill_file, skill_files, skill_location
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["SkillTool"]

_FILES_SHOWN = 50


class SkillParams(Params):
    name: str = Field(description="The skill's name, from the list of available skills.")
    file: str | None = Field(default=None, description="A file inside the skill's folder, e.g. references/guide.md (default: its SKILL.md instructions).")


class SkillTool(Tool):
    name = "skill"
    Params = SkillParams

    def __init__(self, skills: Sequence[Skill]) -> None:
        self.skills = list(skills)
        self._by_name = {skill.name: skill for skill in self.skills}

    def run(self, params: SkillParams, ctx: ToolContext) -> ToolResult:
        skill = self._by_name.get(params.name)
        if skill is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ToolError(f"no skill named {params.name!r}; the skills are: {known}")
        try:
            if params.file:
                text = read_skill_file(skill, params.file)
                return ToolResult(f"{skill.name}/{params.file}\n{text}", data={"skill": skill.name, "file": params.file})
            body = skill.body()
        except SkillError as error:
            raise ToolError(str(error)) from None
        files = [name for name in skill_files(skill) if name != "SKILL.md"]
        header = f"Skill {skill.name} ({skill_location(skill)})"
        if files:
            shown = ", ".join(files[:_FILES_SHOWN]) + (f", ... {len(files) - _FILES_SHOWN} more" if len(files) > _FILES_SHOWN else "")
            header += f"\nIts files (read them with skill(name={skill.name!r}, file=...)): {shown}"
        return ToolResult(f"{header}\n\n{body}", data={"skill": skill.name, "files": len(files)})
