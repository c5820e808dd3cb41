"""Skills in a run: the catalog in the prompt's repository part, the ``skill`` tool in the
tool set (only when there are skills), and invalid or untrusted skills reported as notices."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcode import trust
from kcode.agent.runner import run_task
from kcode.config import Config
from kcode.events import ErrorEvent, Event, MessageAdded
from kcode.llm.scripted import ScriptedModel
from kcode.paths import config_dir

from tests.skills.conftest import write_skill

BODY = "# Fix calc\n\n1. Read calc/__init__.py.\n2. Fix the operator.\n3. Run the tests.\n"
TURNS = [
    {"tool_calls": [{"name": "skill", "arguments": {"name": "fix-calc"}}]},
    {"tool_calls": [{"name": "skill", "arguments": {"name": "fix-calc", "file": "references/notes.md"}}]},
    {"tool_calls": [{"name": "skill", "arguments": {"name": "fix-clac"}}]},
    {"tool_calls": [{"name": "finish", "arguments": {"summary": "Read the skill."}}]},
]  # fmt: skip


class ToolsSeen(ScriptedModel):
    def __init__(self, turns: list[dict]) -> None:
        super().__init__(turns)
        self.tool_names: list[str] = []

    def stream(self, messages, tools, **kwargs):
        self.tool_names = [tool.name for tool in tools]
        return super().stream(messages, tools, **kwargs)


def _run(repo: Path, turns: list[dict]) -> tuple[list[Event], ToolsSeen]:
    events: list[Event] = []
    model = ToolsSeen(turns)
    outcome = run_task("How would calc be fixed?", Config(pack="none"), repo=repo, model=model, subscribers=[events.append])
    assert outcome.result.status == "finished", outcome.result
    return events, model


def _messages(events: list[Event]) -> list[dict]:
    return [event.message for event in events if isinstance(event, MessageAdded)]


@pytest.fixture
def skilled_repo(calc_repo: Path) -> Path:
    folder = write_skill(calc_repo / ".kcode" / "skills", "fix-calc", "Fix calc's arithmetic; use when a calc test fails.", BODY)
    (folder / "references").mkdir()
    (folder / "references" / "notes.md").write_text("add must add.\n")
    write_skill(calc_repo / ".claude" / "skills", "broken", front="name: broken\n")
    write_skill(config_dir() / "skills", "release-notes", "Write release notes.")
    return calc_repo


def test_a_trusted_repository_s_run_lists_and_loads_its_skills(skilled_repo: Path) -> None:
    trust.trust(skilled_repo)
    events, model = _run(skilled_repo, TURNS)
    system, repository, task = _messages(events)[:3]
    assert "<available_skills>" not in system["content"]  # the fixed first message stays the same everywhere
    catalog = repository["content"][repository["content"].index("## Skills") :]
    assert "<name>fix-calc</name>\n<description>Fix calc's arithmetic; use when a calc test fails.</description>\n<location>.kcode/skills/fix-calc/SKILL.md</location>" in catalog
    assert "<name>release-notes</name>" in catalog and "broken" not in catalog
    assert task == {"role": "user", "content": "How would calc be fixed?"}
    assert model.tool_names[-1] == "skill"
    results = [m["content"] for m in _messages(events) if m["role"] == "tool"]
    assert results[0].endswith("\n\n" + BODY.strip()) and "references/notes.md" in results[0]
    assert results[1] == "fix-calc/references/notes.md\nadd must add.\n"
    assert results[2] == "Error: no skill named 'fix-clac'; the skills are: fix-calc, release-notes"
    notices = [e.message for e in events if isinstance(e, ErrorEvent) and e.kind == "notice"]
    assert any("broken/SKILL.md: description is missing" in n and n.startswith("skipped invalid skill: ") for n in notices)


def test_an_untrusted_repository_s_skills_stay_out_of_the_run(skilled_repo: Path) -> None:
    turns = [{"tool_calls": [{"name": "skill", "arguments": {"name": "fix-calc"}}]}, TURNS[-1]]
    events, _ = _run(skilled_repo, turns)
    repository = _messages(events)[1]["content"]
    assert "<name>release-notes</name>" in repository and "fix-calc</name>" not in repository
    results = [m["content"] for m in _messages(events) if m["role"] == "tool"]
    assert results[0] == "Error: no skill named 'fix-calc'; the skills are: release-notes"
    notices = [e.message for e in events if isinstance(e, ErrorEvent) and e.kind == "notice"]
    assert any(".kcode/skills holds skills, but the repository is not trusted" in n for n in notices)


def test_without_skills_there_is_no_catalog_and_no_skill_tool(calc_repo: Path) -> None:
    events, model = _run(calc_repo, [TURNS[-1]])
    assert "<available_skills>" not in _messages(events)[1]["content"]
    assert "skill" not in model.tool_names and model.tool_names[-1] == "finish"
