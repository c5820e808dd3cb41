"""The agentskills.io rules, one by one: each breaks a skill with a message that names the
file and the rule; the optional fields are kept as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcode.errors import SkillError
from kcode.skills import front_matter_problems, load_skill, split_front_matter
from kcode.skills.format import SKILL_MD_MAX_BYTES

from tests.skills.conftest import write_skill


def test_a_valid_skill_keeps_every_field(tmp_path: Path) -> None:
    front = (
        "name: pdf-forms\n"
        "description: 'Fill PDF forms. Use when: the task names a PDF form.'\n"
        "license: Apache-2.0\n"
        "compatibility: needs poppler-utils\n"
        "allowed-tools: bash read_file\n"
        "metadata:\n  author: someone\n  version: '1.2'\n"
        "argument-hint: '[file]'\n"  # another tool's field: kept, not checked
    )
    folder = write_skill(tmp_path, "pdf-forms", front=front, body="\n# PDF forms\n\nRun `scripts/fill.py`.\n")
    skill = load_skill(folder, "user")
    assert (skill.name, skill.description, skill.source, skill.base) == ("pdf-forms", "Fill PDF forms. Use when: the task names a PDF form.", "user", tmp_path)
    assert skill.allowed_tools == ["bash", "read_file"]
    assert skill.front_matter["metadata"] == {"author": "someone", "version": "1.2"}
    assert skill.front_matter["license"] == "Apache-2.0" and skill.front_matter["argument-hint"] == "[file]"
    assert skill.body() == "# PDF forms\n\nRun `scripts/fill.py`."
    assert skill.text().startswith("---\nname: pdf-forms\n")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"description": "d"}, "name is missing"),
        ({"name": 7, "description": "d"}, "name must be a string, not int"),
        ({"name": "a" * 65, "description": "d"}, "is 65 characters long; at most 64"),
        ({"name": "Fix-Tests", "description": "d"}, "may hold only lowercase letters, digits and hyphens"),
        ({"name": "fix_tests", "description": "d"}, "may hold only lowercase letters"),
        ({"name": "-fix", "description": "d"}, "no hyphen at the start or end"),
        ({"name": "fix-", "description": "d"}, "no hyphen at the start or end"),
        ({"name": "fix--tests", "description": "d"}, "none doubled"),
        ({"name": "other", "description": "d"}, "name 'other' differs from its folder's name 'fix-tests'"),
        ({"name": "fix-tests"}, "description is missing"),
        ({"name": "fix-tests", "description": "   "}, "description is empty"),
        ({"name": "fix-tests", "description": ["a"]}, "description must be a string, not list"),
        ({"name": "fix-tests", "description": "x" * 1025}, "description is 1025 characters long; at most 1024"),
        ({"name": "fix-tests", "description": "d", "compatibility": "x" * 501}, "compatibility is 501 characters long; at most 500"),
        ({"name": "fix-tests", "description": "d", "license": 3}, "license must be a string"),
        ({"name": "fix-tests", "description": "d", "metadata": ["a"]}, "metadata must be a mapping"),
        ({"name": "fix-tests", "description": "d", "allowed-tools": 5}, "allowed-tools must be a space-separated string"),
    ],
)
def test_each_rule_is_checked(data: dict, problem: str) -> None:
    folder = "fix-tests" if "folder" in problem else None  # the folder rule alone is checked with one
    problems = front_matter_problems(data, folder)
    assert len(problems) == 1 and problem in problems[0], problems


def test_the_limits_themselves_are_allowed() -> None:
    assert front_matter_problems({"name": "a" * 64, "description": "x" * 1024, "compatibility": "c" * 500}, "a" * 64) == []
    assert front_matter_problems({"name": "a1-b2-3c", "description": "d", "allowed-tools": ["bash", "edit_file"]}) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# no front matter\n", "no front matter (the file must start with a '---' line"),
        ("---\nname: x\ndescription: d\n", "no front matter"),  # never closed
        ("---\nname: x\ndescription: Use when: tests fail\n---\nbody\n", "the front matter is not valid YAML at line 3"),
        ("---\n- a list\n---\nbody\n", "must be a YAML mapping (name: ..., description: ...), not list"),
    ],
)
def test_front_matter_that_cannot_be_read(text: str, problem: str) -> None:
    with pytest.raises(SkillError, match=None) as caught:
        split_front_matter(text, "x/SKILL.md")
    assert str(caught.value).startswith("x/SKILL.md: ") and problem in str(caught.value)


def test_empty_front_matter_reads_as_no_fields() -> None:
    assert split_front_matter("---\n---\nbody\n") == ({}, "body\n")


def test_an_invalid_skill_names_its_file_and_every_problem(tmp_path: Path) -> None:
    folder = write_skill(tmp_path, "Bad_Name", front="name: Bad_Name\n", folder="Bad_Name")
    with pytest.raises(SkillError) as caught:
        load_skill(folder, "project")
    message = str(caught.value)
    assert message.startswith(f"{folder / 'SKILL.md'}: ")
    assert "may hold only lowercase letters" in message and "description is missing" in message


def test_a_huge_or_undecodable_skill_md_is_refused(tmp_path: Path) -> None:
    folder = write_skill(tmp_path, "big", body="x" * (SKILL_MD_MAX_BYTES + 1))
    with pytest.raises(SkillError, match=r"bytes; a SKILL.md may have at most 262144 \(move details to references/\)"):
        load_skill(folder, "user")
    folder = write_skill(tmp_path, "latin")
    (folder / "SKILL.md").write_bytes(b"---\nname: latin\ndescription: caf\xe9\n---\n")
    with pytest.raises(SkillError, match=r"not UTF-8 text \(byte 32\)"):
        load_skill(folder, "user")
