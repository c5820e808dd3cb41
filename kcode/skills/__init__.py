"""Skills (agentskills.io): folders with a ``SKILL.md`` that teach the agent a procedure.

:mod:`~kcode.skills.format` reads and checks one, :mod:`~kcode.skills.discovery` finds them
(the trusted repository's, then the user's), :mod:`~kcode.skills.catalog` lists them for the
model, :mod:`~kcode.skills.files` reads the files of a skill's folder. The ``skill`` tool
(``kcode.tools.skill``) loads them in a run; ``kcode skills`` lists, shows and saves them.
"""

from kcode.skills.catalog import CATALOG_SHARE, render_catalog, skill_location
from kcode.skills.discovery import PROJECT_SKILL_DIRS, SkillProblem, SkillSet, discover_skills, project_skill_dirs, user_skill_dirs
from kcode.skills.files import read_skill_file, resolve_skill_file, skill_files
from kcode.skills.format import DESCRIPTION_MAX, NAME_MAX, SKILL_FILE, Skill, front_matter_problems, load_skill, split_front_matter

__all__ = [
    "CATALOG_SHARE",
    "DESCRIPTION_MAX",
    "NAME_MAX",
    "PROJECT_SKILL_DIRS",
    "SKILL_FILE",
    "Skill",
    "SkillProblem",
    "SkillSet",
    "discover_skills",
    "front_matter_problems",
    "load_skill",
    "project_skill_dirs",
    "read_skill_file",
    "render_catalog",
    "resolve_skill_file",
    "skill_files",
    "skill_location",
    "split_front_matter",
    "user_skill_dirs",
]
