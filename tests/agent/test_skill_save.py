"""Saving a finished session as a skill: the digest the model reads (the literal commands, the
checks that passed, the files), the SKILL.md it writes (checked; one retry with what was
wrong, then a clear error), and where it goes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kcode import trust
from kcode.agent.runner import run_task
from kcode.agent.skill_digest import digest_session
from kcode.agent.skill_save import save_session_skill, skill_md_problems
from kcode.config import Config
from kcode.errors import SkillError, UsageError
from kcode.llm.scripted import ScriptedModel
from kcode.paths import config_dir
from kcode.session import SessionStore, read_events
from kcode.skills import discover_skills

from tests.conftest import CALC_BUGGY, CALC_TESTS, FIX_TURNS, git, write_script

GOOD = """---
name: fix-calc
description: Fix a wrong arithmetic operator in calc and prove it with the test suite. Use when a calc test fails.
---
# Fix calc

## Procedure
1. Read `calc/__init__.py`.
2. Run the tests: `python -m pytest -q`.
3. Replace the wrong operator.

## Checks
- `python -m pytest -q` passes (2 passed).

## Files
- calc/__init__.py
"""


class RecordingModel(ScriptedModel):
    """The scripted model, keeping every request it was sent."""

    def __init__(self, turns: list[dict]) -> None:
        super().__init__(turns, name="recording")
        self.requests: list[list[dict]] = []
        self.tool_names: list[list[str]] = []

    def stream(self, messages, tools, **kwargs):
        self.requests.append([dict(message) for message in messages])
        self.tool_names.append([tool.name for tool in tools])
        return super().stream(messages, tools, **kwargs)


def write_skill_turn(text: str) -> dict:
    return {"tool_calls": [{"name": "write_skill", "arguments": {"skill_md": text}}]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One finished session for the module (its kcode home, repository, id) that fixed calc's
    bug and ran the tests (failing, then passing)."""
    home, repo = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("finished") / "repo"
    (repo / "calc").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "calc" / "__init__.py").write_text(CALC_BUGGY)
    (repo / "tests" / "test_calc.py").write_text(CALC_TESTS)
    (repo / "pyproject.toml").write_text("[tool.pytest.ini_options]\npythonpath = ['.']\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KCODE_HOME", str(home))
        outcome = run_task("Fix the failing test", Config(model=f"scripted:{write_script(repo.parent / 'fix.json', FIX_TURNS)}"), repo=repo)
    assert outcome.result.status == "finished"
    return home, repo, outcome.meta.session_id


@pytest.fixture
def calc_repo(finished: tuple[Path, Path, str], tmp_path: Path) -> Path:
    """A copy of the finished session's repository, its branch included."""
    copy = tmp_path / "repo"
    shutil.copytree(finished[1], copy, symlinks=True)
    return copy


@pytest.fixture
def session(finished: tuple[Path, Path, str], calc_repo: Path) -> str:
    """The finished session, copied into this test's kcode home and pointing at its copy of
    the repository."""
    home, _, session_id = finished
    target = SessionStore().dir(session_id)
    shutil.copytree(home / "data" / "sessions" / session_id, target)
    meta = json.loads((target / "meta.json").read_text())
    (target / "meta.json").write_text(json.dumps({**meta, "repo": str(calc_repo)}))
    return session_id


def test_the_digest_holds_the_commands_the_checks_and_the_files(session: str) -> None:
    store = SessionStore()
    meta = store.read_meta(session)
    digest = digest_session(meta, read_events(store.log_path(session)))
    text = digest.text
    assert text.startswith(f"# Session {session}\nTask: Fix the failing test\nRepository: repo\nOutcome: finished after 5 steps. Summary: Fixed add(); tests pass.")
    test_command = digest.commands[0]
    assert "pytest" in test_command and digest.commands == [test_command, test_command]
    assert f"- step 2: run_tests: $ {test_command} -> failed: 1 passed, 1 failed, 0 errors" in text
    assert "- step 3: edit_file calc/__init__.py: replaced 'return a - b' with 'return a + b' -> ok" in text
    assert f"- step 4: run_tests: $ {test_command} -> passed: 2 passed, 0 failed, 0 errors" in text
    assert "- step 1, the agent said: Reading the code first.\n- step 1: read_file calc/__init__.py -> ok" in text
    assert f"## Checks that passed\n- `{test_command}`: 2 passed, 0 failed, 0 errors (step 4)" in text
    assert f"## Checks that failed on the way\n- `{test_command}`: 1 passed, 1 failed, 0 errors (step 2)" in text
    assert "## Files changed\n- calc/__init__.py (update)" in text and "## Files read\n- calc/__init__.py" in text
    assert digest.checks == [f"`{test_command}`: 2 passed, 0 failed, 0 errors (step 4)"] and digest.files_changed == ["calc/__init__.py"]


def test_a_long_session_s_digest_keeps_its_first_and_last_steps(session: str) -> None:
    store = SessionStore()
    events = list(read_events(store.log_path(session)))
    digest = digest_session(store.read_meta(session), events, max_chars=100)  # the floor: 2000 characters of steps
    assert digest.steps_left_out == 0  # five short steps fit the floor
    many = events[:1] + [event for event in events if event.type == "tool.finished"] * 60 + events[-1:]
    long = digest_session(store.read_meta(session), many, max_chars=6000)
    assert long.steps_left_out > 0 and f"[... {long.steps_left_out} steps left out here to fit ...]" in long.text
    assert long.text.index("- step 1: read_file") < long.text.index("left out here") < long.text.rindex("- step 5: finish")
    assert len(long.text) < 6000 + 1000


def test_the_model_writes_the_skill_from_the_digest_and_it_is_saved(session: str, calc_repo: Path) -> None:
    model = RecordingModel([write_skill_turn(GOOD)])
    saved = save_session_skill(session, model=model)
    assert (saved.name, saved.scope, saved.attempts, saved.loaded) == ("fix-calc", "project", 1, False)
    assert saved.path == calc_repo / ".kcode" / "skills" / "fix-calc" / "SKILL.md"
    assert saved.path.read_text() == GOOD
    system, request = model.requests[0]
    assert "agentskills.io" in system["content"] and "write_skill" in system["content"]
    assert f"# Session {session}" in request["content"] and "## Checks that passed" in request["content"]
    assert model.tool_names == [["write_skill"]]
    # a trusted repository's runs find it
    trust.trust(calc_repo)
    assert discover_skills(calc_repo).get("fix-calc").body().startswith("# Fix calc\n\n## Procedure\n1. Read `calc/__init__.py`.")


def test_an_invalid_skill_md_is_sent_back_once_with_what_is_wrong(session: str, calc_repo: Path) -> None:
    bad = GOOD.replace("name: fix-calc", "name: Fix_Calc")
    model = RecordingModel([write_skill_turn(bad), write_skill_turn(GOOD)])
    saved = save_session_skill(session, model=model)
    assert saved.attempts == 2 and saved.path.read_text() == GOOD
    retry = model.requests[1]
    assert retry[-2]["role"] == "assistant" and retry[-2]["tool_calls"][0]["name"] == "write_skill"
    assert retry[-1]["role"] == "tool" and retry[-1]["tool_call_id"] == retry[-2]["tool_calls"][0]["id"]
    assert "That SKILL.md cannot be saved: name 'Fix_Calc' may hold only lowercase letters" in retry[-1]["content"]


def test_a_second_invalid_answer_is_a_clear_error_and_nothing_is_written(session: str, calc_repo: Path) -> None:
    model = RecordingModel([{"content": "Here is your skill: it fixes calc."}, write_skill_turn("---\n---\n")])
    with pytest.raises(SkillError, match=f"the model's SKILL.md for session {session} is invalid after a retry: name is missing; description is missing; the body"):
        save_session_skill(session, model=model)
    assert model.requests[1][-1] == {"role": "user", "content": model.requests[1][-1]["content"]}  # a plain answer: the error comes as a user message
    assert "no front matter" in model.requests[1][-1]["content"]
    assert not (calc_repo / ".kcode").exists()


def test_a_plain_answer_in_a_code_fence_is_taken_and_a_name_is_held_to(session: str, calc_repo: Path) -> None:
    model = RecordingModel([{"content": "```markdown\n" + GOOD + "```\n"}, write_skill_turn(GOOD.replace("fix-calc", "calc-operator-fix"))])
    saved = save_session_skill(session, model=model, name="calc-operator-fix", scope="user")
    assert saved.attempts == 2 and saved.loaded
    assert "name 'fix-calc' differs from its folder's name 'calc-operator-fix'" in model.requests[1][-1]["content"]
    assert "exactly `calc-operator-fix`" in model.requests[0][0]["content"]
    assert saved.path == config_dir() / "skills" / "calc-operator-fix" / "SKILL.md"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the answer holds no SKILL.md"),
        ("---\nname: a\ndescription: d\n---\n\n", "the body (the instructions after the front matter) is empty"),
        ("---\nname: a\ndescription: d\n---\n" + "line\n" * 501, "the body has 501 lines; at most 500 are allowed"),
        ("---\nname: a\ndescription: " + "x" * 1025 + "\n---\nbody\n", "description is 1025 characters long"),
    ],
)
def test_what_a_saved_skill_md_must_be(text: str, problem: str) -> None:
    assert any(problem in found for found in skill_md_problems(text)), skill_md_problems(text)


def test_unfinished_sessions_existing_skills_and_bad_names_are_refused(session: str, calc_repo: Path, tmp_path: Path) -> None:
    save_session_skill(session, model=RecordingModel([write_skill_turn(GOOD)]))
    with pytest.raises(UsageError, match=r"fix-calc/SKILL.md exists; choose another --name, or --force to replace it"):
        save_session_skill(session, name="fix-calc", model=RecordingModel([]))  # refused before the model is asked
    with pytest.raises(UsageError, match="exists"):
        save_session_skill(session, model=RecordingModel([write_skill_turn(GOOD)]))  # the name the model chose
    changed = GOOD.replace("## Files", "## Files involved")
    save_session_skill(session, model=RecordingModel([write_skill_turn(changed)]), force=True)
    assert (calc_repo / ".kcode" / "skills" / "fix-calc" / "SKILL.md").read_text() == changed
    with pytest.raises(UsageError, match="--name 'Fix': name 'Fix' may hold only lowercase letters"):
        save_session_skill(session, name="Fix", model=RecordingModel([]))
    with pytest.raises(UsageError, match="unknown scope 'team'"):
        save_session_skill(session, scope="team", model=RecordingModel([]))
    script = tmp_path / "stop.json"
    script.write_text('{"turns": []}')
    stopped = run_task("Fix it", Config(model=f"scripted:{script}", max_steps=1), repo=calc_repo)
    assert stopped.result.status != "finished"
    with pytest.raises(UsageError, match=f"session {stopped.meta.session_id} ended '{stopped.result.status}'; only a finished session"):
        save_session_skill(stopped.meta.session_id, model=RecordingModel([]))
