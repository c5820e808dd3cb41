"""The ``skill`` tool: a skill's instructions, the files of its folder, and nothing outside
it; in the default tool set only when there are skills."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcode.llm.base import ToolCall
from kcode.skills import discover_skills
from kcode.skills.files import SKILL_FILE_MAX_BYTES
from kcode.tools import SkillTool, ToolContext, default_tools

from tests.skills.conftest import write_skill


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    base = tmp_path / "user-skills"
    folder = write_skill(base, "release-notes", "Write release notes.", "# Release notes\n\n1. Run `scripts/changes.sh`.\n2. Follow references/style.md.\n")
    (folder / "scripts").mkdir()
    (folder / "scripts" / "changes.sh").write_text("#!/bin/sh\ngit log --oneline\n")
    (folder / "references").mkdir()
    (folder / "references" / "style.md").write_text("Short lines.\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (folder / "huge.txt").write_text("x" * (SKILL_FILE_MAX_BYTES + 1))
    (tmp_path / "secret.txt").write_text("not the skill's")
    os.symlink(tmp_path / "secret.txt", folder / "link-out.txt")
    write_skill(base, "other", "Another one.")
    return base


@pytest.fixture
def run(skills_dir: Path, ctx: ToolContext):
    registry = default_tools(discover_skills(None, user_dirs=[skills_dir]).skills)

    def call(**arguments):
        return registry.execute(ToolCall("call_1", "skill", arguments), ctx)

    return call


def test_the_tool_is_there_only_when_there_are_skills(skills_dir: Path) -> None:
    assert "skill" not in default_tools()
    tools = default_tools(discover_skills(None, user_dirs=[skills_dir]).skills)
    assert tools.names[-1] == "skill" and tools.names[:-1] == default_tools().names
    spec = tools.get("skill").spec()
    assert spec.parameters["required"] == ["name"] and set(spec.parameters["properties"]) == {"name", "file"}
    assert "SKILL.md" in spec.description


def test_a_skill_s_body_comes_without_front_matter_with_its_files_listed(run, skills_dir: Path) -> None:
    result = run(name="release-notes")
    assert not result.is_error
    header, body = result.output.split("\n\n", 1)
    assert body == "# Release notes\n\n1. Run `scripts/changes.sh`.\n2. Follow references/style.md."
    assert header.startswith(f"Skill release-notes ({skills_dir / 'release-notes' / 'SKILL.md'})")
    assert "huge.txt, logo.png, references/style.md, scripts/changes.sh" in header
    assert "link-out.txt" not in header  # it points out of the folder
    assert "name:" not in result.output
    assert result.data == {"skill": "release-notes", "files": 4}


def test_files_inside_the_folder_can_be_read(run) -> None:
    assert run(name="release-notes", file="references/style.md").output == "release-notes/references/style.md\nShort lines.\n"
    assert run(name="release-notes", file="scripts/changes.sh").output.endswith("git log --oneline\n")
    listing = run(name="release-notes", file="scripts")
    assert not listing.is_error and listing.output == "release-notes/scripts\nscripts: a folder of skill 'release-notes', 1 files\nscripts/changes.sh"


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("../other/SKILL.md", "../other/SKILL.md: outside the folder of skill 'release-notes'; only its own files can be read"),
        ("../../secret.txt", "outside the folder of skill 'release-notes'"),
        ("link-out.txt", "link-out.txt: outside the folder of skill 'release-notes'"),
        ("/etc/passwd", "/etc/passwd: give a path relative to the skill's folder"),
        ("~/.ssh/id_rsa", "give a path relative to the skill's folder"),
        ("logo.png", "logo.png: a binary file (16 bytes); only text files of a skill can be read"),
        ("huge.txt", f"huge.txt: {SKILL_FILE_MAX_BYTES + 1} bytes, more than the {SKILL_FILE_MAX_BYTES}"),
        ("missing.md", "missing.md: no such file in skill 'release-notes' (its files: SKILL.md, huge.txt, logo.png, references/style.md, scripts/changes.sh)"),
    ],
)
def test_escapes_binaries_and_huge_files_are_refused(run, file: str, message: str) -> None:
    result = run(name="release-notes", file=file)
    assert result.is_error and result.output.startswith("Error: ") and message in result.output, result.output
    assert "not the skill's" not in result.output


def test_an_unknown_name_lists_the_known_ones(run) -> None:
    result = run(name="relase-notes")
    assert result.is_error
    assert result.output == "Error: no skill named 'relase-notes'; the skills are: other, release-notes"


def test_a_skill_broken_after_discovery_is_a_clear_error(skills_dir: Path, ctx: ToolContext) -> None:
    tool = SkillTool(discover_skills(None, user_dirs=[skills_dir]).skills)
    (skills_dir / "other" / "SKILL.md").write_text("no front matter any more\n")
    result = default_tools(tool.skills).execute(ToolCall("c", "skill", {"name": "other"}), ctx)
    assert result.is_error and "SKILL.md: no front matter" in result.output
