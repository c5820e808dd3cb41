"""Skills end to end, through the real ``kcode`` executable: a finished run saved as a skill
(``kcode skills save``, a scripted model writing it), listed and shown, then a later
``kcode run`` that finds it in its prompt, loads it and follows it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import write_script

SKILL_MD = """---
name: fix-calc
description: Fix a wrong operator in calc and prove it with the tests. Use when a calc test fails.
---
# Fix calc

## Procedure
1. Edit `calc/__init__.py`: `return a - b` becomes `return a + b`.
2. Run the tests: `python -m pytest -q`.

## Checks
- The tests pass (2 passed).

## Files
- calc/__init__.py
"""
FOLLOW = [
    {"content": "A skill matches this task.", "tool_calls": [{"name": "skill", "arguments": {"name": "fix-calc"}}]},
    {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
    {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
    {"tool_calls": [{"name": "finish", "arguments": {"summary": "Followed the fix-calc skill; tests pass."}}]},
]  # fmt: skip


def _latest_session(kcode, repo: Path) -> str:
    listed = kcode("sessions", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()[-1].split()[0]


def _log(kcode_home: Path, session_id: str) -> list[dict]:
    path = kcode_home / "data" / "sessions" / session_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_saved_skill_is_listed_shown_and_followed_by_a_later_run(kcode, kcode_home: Path, calc_repo: Path, fix_script: Path, tmp_path: Path) -> None:
    first = kcode("run", "Fix the failing test", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert first.returncode == 0, first.stderr
    session_id = _latest_session(kcode, calc_repo)

    writer = write_script(tmp_path / "writer.json", [{"tool_calls": [{"name": "write_skill", "arguments": {"skill_md": SKILL_MD}}]}])
    saved = kcode("skills", "save", session_id, "--model", f"scripted:{writer}", cwd=calc_repo)
    assert saved.returncode == 0, saved.stderr
    path = calc_repo / ".kcode" / "skills" / "fix-calc" / "SKILL.md"
    assert saved.stdout.splitlines()[0] == f"kcode skills save: wrote skill fix-calc to {path}"
    assert "this repository is not trusted" in saved.stdout and path.read_text() == SKILL_MD

    untrusted = kcode("skills", "list", cwd=calc_repo)
    assert untrusted.returncode == 0 and untrusted.stdout.startswith("no skills")
    assert f"warning: {calc_repo / '.kcode' / 'skills'} holds skills, but the repository is not trusted" in untrusted.stderr
    assert kcode("trust", cwd=calc_repo).returncode == 0
    broken = calc_repo / ".claude" / "skills" / "Broken"
    broken.mkdir(parents=True)
    (broken / "SKILL.md").write_text("---\nname: Broken\ndescription: x\n---\nbody\n")
    listed = kcode("skills", "list", cwd=calc_repo)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "fix-calc  project  .kcode/skills/fix-calc/SKILL.md",
        "          Fix a wrong operator in calc and prove it with the tests. Use when a calc test fails.",
    ]
    assert f"kcode: warning: skipped invalid skill: {broken / 'SKILL.md'}: name 'Broken' may hold only lowercase letters" in listed.stderr
    shown = kcode("skills", "show", "fix-calc", cwd=calc_repo)
    assert shown.returncode == 0 and shown.stdout == SKILL_MD
    missing = kcode("skills", "show", "fix-clac", cwd=calc_repo)
    assert missing.returncode == 2 and "no skill named 'fix-clac'; the skills are: fix-calc" in missing.stderr

    follow = write_script(tmp_path / "follow.json", FOLLOW)
    later = kcode("run", "Fix the failing test", "--model", f"scripted:{follow}", cwd=calc_repo)
    assert later.returncode == 0, later.stderr
    assert "Status: finished after 4 steps" in later.stdout and "Tests: passing (2 passed" in later.stdout
    events = _log(kcode_home, _latest_session(kcode, calc_repo))
    messages = [event["message"] for event in events if event["type"] == "message.added"]
    assert "<name>fix-calc</name>" in messages[1]["content"] and "<available_skills>" in messages[1]["content"]
    loaded = next(event for event in events if event["type"] == "tool.finished" and event["name"] == "skill")
    assert not loaded["is_error"] and loaded["output"].endswith(SKILL_MD.split("---\n", 2)[2].strip())
    assert "invalid skill" in later.stderr  # the run warns about the broken one too


def test_a_model_that_cannot_write_a_valid_skill_is_a_clear_error(kcode, calc_repo: Path, fix_script: Path, tmp_path: Path) -> None:
    assert kcode("run", "Fix the failing test", "--model", f"scripted:{fix_script}", cwd=calc_repo).returncode == 0
    bad = write_script(tmp_path / "bad.json", [{"content": "I fixed calc."}, {"content": "---\nname: fix calc\n---\n"}])
    saved = kcode("skills", "save", "--model", f"scripted:{bad}", cwd=calc_repo)  # the latest session of the repository
    assert saved.returncode == 1
    assert "is invalid after a retry: name 'fix calc' may hold only lowercase letters" in saved.stderr and "description is missing" in saved.stderr
    assert not (calc_repo / ".kcode").exists()
    unknown = kcode("skills", "save", "no-such-session", cwd=calc_repo)
    assert unknown.returncode == 1 and "no session 'no-such-session'" in unknown.stderr
