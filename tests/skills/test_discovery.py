"""Discovery: every folder, the trusted repository's only, the project over the user, the
first folder over the next; invalid skills warned about and skipped. And the catalog the
model reads, within 2 % of its window."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcode import trust
from kcode.paths import agents_dir, config_dir
from kcode.skills import discover_skills, render_catalog, user_skill_dirs
from kcode.skills.catalog import catalog_budget
from kcode.skills.format import load_skill
from kcode.agent.prompt import conservative_token_estimate

from tests.skills.conftest import write_skill


def test_user_folders_follow_kcode_home(kcode_home: Path) -> None:
    assert user_skill_dirs() == [kcode_home / "config" / "skills", kcode_home / "agents" / "skills"]
    assert user_skill_dirs() == [config_dir() / "skills", agents_dir() / "skills"]


def test_every_folder_is_searched_in_a_trusted_repository(calc_repo: Path) -> None:
    write_skill(calc_repo / ".kcode" / "skills", "from-kcode")
    write_skill(calc_repo / ".agents" / "skills", "from-agents")
    write_skill(calc_repo / ".claude" / "skills", "from-claude")
    write_skill(config_dir() / "skills", "from-user-config")
    write_skill(agents_dir() / "skills", "from-user-agents")
    trust.trust(calc_repo)
    found = discover_skills(calc_repo)
    assert found.names == ["from-agents", "from-claude", "from-kcode", "from-user-agents", "from-user-config"]
    assert [s.source for s in found.skills] == ["project"] * 3 + ["user"] * 2
    assert found.get("from-claude").path == calc_repo / ".claude" / "skills" / "from-claude"
    assert found.problems == [] and found.untrusted == [] and found.notices() == []


def test_an_untrusted_repository_s_skills_are_not_loaded_and_the_user_is_told(calc_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_skill(calc_repo / ".kcode" / "skills", "from-kcode")
    write_skill(calc_repo / ".claude" / "skills", "from-claude")
    write_skill(config_dir() / "skills", "mine")
    found = discover_skills(calc_repo)
    assert found.names == ["mine"]
    assert found.untrusted == [calc_repo / ".kcode" / "skills", calc_repo / ".claude" / "skills"]
    assert any("holds skills, but the repository is not trusted" in line and "kcode trust" in line for line in found.notices())
    monkeypatch.setenv("KCODE_TRUST_PROJECT", "1")  # CI's way to trust the checkout
    assert discover_skills(calc_repo).names == ["from-claude", "from-kcode", "mine"]
    assert discover_skills(calc_repo, trusted=False).names == ["mine"]
    assert discover_skills(None).names == ["mine"]  # outside a repository: the user's only


def test_the_project_wins_over_the_user_and_the_first_folder_over_the_next(calc_repo: Path, tmp_path: Path) -> None:
    write_skill(calc_repo / ".claude" / "skills", "run-tests", "the claude folder's")
    write_skill(calc_repo / ".kcode" / "skills", "run-tests", "the kcode folder's")
    write_skill(config_dir() / "skills", "run-tests", "the user's")
    write_skill(config_dir() / "skills", "release", "the user's config")
    write_skill(agents_dir() / "skills", "release", "the user's agents")
    found = discover_skills(calc_repo, trusted=True)
    assert [(s.name, s.description) for s in found.skills] == [("run-tests", "the kcode folder's"), ("release", "the user's config")]
    hidden = {(h.description, w.description) for h, w in found.shadowed}
    assert hidden == {("the claude folder's", "the kcode folder's"), ("the user's", "the kcode folder's"), ("the user's agents", "the user's config")}
    # the user's folders can be given (tests, other tools' layouts)
    own = tmp_path / "elsewhere"
    write_skill(own, "release", "from elsewhere")
    assert [s.description for s in discover_skills(None, user_dirs=[own]).skills] == ["from elsewhere"]


def test_invalid_skills_are_warned_about_and_skipped(calc_repo: Path) -> None:
    base = calc_repo / ".kcode" / "skills"
    write_skill(base, "good")
    write_skill(base, "wrong-folder", front="name: other-name\ndescription: d\n")
    write_skill(base, "no-description", front="name: no-description\n")
    (base / "empty-folder").mkdir()
    (base / ".hidden").mkdir()  # not a skill, not a problem
    (base / "README.md").write_text("notes")  # a file beside the skills: ignored
    found = discover_skills(calc_repo, trusted=True, user_dirs=[])
    assert found.names == ["good"]
    messages = sorted(str(problem) for problem in found.problems)
    assert messages == [
        f"skipped invalid skill: {base / 'empty-folder'}: no SKILL.md in this folder of {base}",
        f"skipped invalid skill: {base / 'no-description' / 'SKILL.md'}: description is missing",
        f"skipped invalid skill: {base / 'wrong-folder' / 'SKILL.md'}: name 'other-name' differs from its folder's name 'wrong-folder'",
    ]
    assert found.notices() == [str(problem) for problem in found.problems]


def _skills(tmp_path: Path, count: int) -> list:
    return [load_skill(write_skill(tmp_path, f"skill-{i:03d}", f"Description number {i} of a skill that does things."), "user") for i in range(count)]


def test_the_catalog_lists_name_description_and_location(calc_repo: Path) -> None:
    base = calc_repo / ".kcode" / "skills"
    write_skill(base, "fix-calc", front="name: fix-calc\ndescription: >\n  Fix calc <bugs> & run the tests.\n\n  Use it for calc.\n")
    write_skill(config_dir() / "skills", "mine", "The user's own.")
    found = discover_skills(calc_repo, trusted=True)
    text = render_catalog(found.skills, conservative_token_estimate, 262_144, root=calc_repo)
    assert text.startswith("## Skills\n")
    block = text[text.index("<available_skills>") :]
    assert block == (
        "<available_skills>\n"
        "<skill>\n<name>fix-calc</name>\n<description>Fix calc &lt;bugs&gt; &amp; run the tests. Use it for calc.</description>\n"
        "<location>.kcode/skills/fix-calc/SKILL.md</location>\n</skill>\n"
        "<skill>\n<name>mine</name>\n<description>The user's own.</description>\n"
        f"<location>{config_dir() / 'skills' / 'mine' / 'SKILL.md'}</location>\n</skill>\n"
        "</available_skills>"
    )
    assert render_catalog([], conservative_token_estimate, 262_144) == ""


@pytest.mark.parametrize("window", [8192, 32_768, 262_144])
def test_the_catalog_stays_within_two_percent_of_the_window(tmp_path: Path, window: int) -> None:
    skills = _skills(tmp_path, 300)
    text = render_catalog(skills, conservative_token_estimate, window)
    budget = catalog_budget(window)
    assert budget == window * 2 // 100
    assert conservative_token_estimate(text) <= budget
    listed = re.findall(r"<name>(skill-\d+)</name>", text)
    left_out = int(re.search(r"\[(\d+) more skills left out of this list to save space", text).group(1))
    assert listed == [skill.name for skill in skills[: len(listed)]]  # the first ones, in order
    assert len(listed) + left_out == 300 and len(listed) >= (1 if window >= 32_768 else 0)  # 163 tokens hold only the heading
    # one more skill would not have fitted: the cap is used, not undershot
    whole = render_catalog(skills, conservative_token_estimate, window * 1000).split("<skill>\n")
    head, entries = whole[0], ["<skill>\n" + entry for entry in whole[1:]]
    one_more = head + "".join(entries[: len(listed) + 1]).removesuffix("</available_skills>") + "</available_skills>\n"
    one_more += f"[{300 - len(listed) - 1} more skills left out of this list to save space: `skill` with an unknown name lists every name]"
    assert conservative_token_estimate(one_more) > budget


def test_a_catalog_that_fits_has_no_left_out_line_and_a_tiny_window_gets_none(tmp_path: Path) -> None:
    skills = _skills(tmp_path, 3)
    assert "left out" not in render_catalog(skills, conservative_token_estimate, 262_144)
    assert render_catalog(skills, conservative_token_estimate, 1000) == ""  # 20 tokens: not even the heading
