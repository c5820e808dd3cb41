"""``run_task`` and ``resume_task`` with their parts passed in: a model, a tool list, a
prompt, a session store and subscribers, each shown to be the one used. And the
repository's own settings are checked by the runner before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcode.agent.runner import resume_task, run_task
from kcode.config import Config, load_config
from kcode.errors import ConfigError
from kcode.events import ContextPacked, Event, MessageAdded, SessionFinished, SessionStarted
from kcode.llm.scripted import ScriptedModel
from kcode.session import SessionStore, read_events
from kcode.tools.base import Params, Tool, ToolContext, ToolRegistry, ToolResult
from kcode.tools.plan import FinishTool

from tests.conftest import git


class NoteParams(Params):
    text: str


class NoteTool(Tool):
    """A tool of the test's own: remembers what it was given."""

    name = "note"
    Params = NoteParams

    def __init__(self) -> None:
        self.notes: list[str] = []

    def description(self) -> str:
        return "Write a note for the test."

    def run(self, params: NoteParams, ctx: ToolContext) -> ToolResult:
        self.notes.append(params.text)
        return ToolResult(f"noted: {params.text}")


class KeptModel(ScriptedModel):
    """The scripted model, counting ``close`` calls (a model passed in stays the caller's)."""

    closes = 0

    def close(self) -> None:
        self.closes += 1


TURNS = [
    {"tool_calls": [{"name": "note", "arguments": {"text": "first"}}, {"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]},
    {"tool_calls": [{"name": "note", "arguments": {"text": "second"}}]},
    {"tool_calls": [{"name": "finish", "arguments": {"summary": "two notes"}}]},
]  # fmt: skip
PROMPT = [{"role": "system", "content": "You take notes."}, {"role": "user", "content": "Describe the calc package in two notes."}]  # a question: a finish without changes is accepted
# A model the runner cannot create: the run must use the one passed in.
UNUSABLE = Config(model="scripted:/nonexistent/script.json")


def test_run_task_uses_the_parts_it_is_given(calc_repo: Path, tmp_path: Path) -> None:
    model = KeptModel(TURNS, name="kept")
    note = NoteTool()
    store = SessionStore(tmp_path / "my-sessions")
    events: list[Event] = []
    types: list[str] = []
    prompt = [dict(message) for message in PROMPT]
    outcome = run_task(
        "Describe the calc package in two notes", UNUSABLE, repo=calc_repo, model=model, tools=ToolRegistry([note, FinishTool()]),
        prompt=prompt, store=store, subscribers=[events.append, lambda event: types.append(event.type)],
    )  # fmt: skip
    result = outcome.result
    assert (result.status, result.steps, result.summary) == ("finished", 3, "two notes")
    # the model: all its turns used, its name recorded, left open
    assert model.position == 3 and outcome.meta.model == "kept" and model.closes == 0
    # the tools: the test's own ran; a default tool is not there
    assert note.notes == ["first", "second"]
    results = [message["content"] for message in outcome_messages(events) if message["role"] == "tool"]
    assert results[1] == "Unknown tool 'read_file'. Available tools: note, finish."
    # the prompt: the conversation starts with it, as it is; no repository pack was built
    assert outcome_messages(events)[:2] == PROMPT and prompt == PROMPT
    assert not any(isinstance(event, ContextPacked) for event in events)
    # the store: the session's files are there and only there
    session_id = outcome.meta.session_id
    assert (store.root / session_id / "meta.json").is_file()
    assert store.read_meta(session_id).status == "finished"
    assert SessionStore().list() == []
    logged = list(read_events(store.log_path(session_id)))
    # the subscribers: each saw every event the log holds, in order
    assert types == [event.type for event in events] == [event.type for event in logged]
    assert isinstance(events[0], SessionStarted) and isinstance(events[-1], SessionFinished)


def outcome_messages(events: list[Event]) -> list[dict]:
    return [event.message for event in events if isinstance(event, MessageAdded)]


def test_resume_task_uses_the_parts_it_is_given(calc_repo: Path, tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "my-sessions")
    note = NoteTool()
    tools = ToolRegistry([note, FinishTool()])
    first = run_task("Describe the calc package in two notes", UNUSABLE.replace(max_steps=1), repo=calc_repo, model=KeptModel(TURNS), tools=tools, prompt=PROMPT, store=store)
    assert first.result.status == "budget_exhausted" and note.notes == ["first"]
    model = KeptModel(TURNS, name="kept-again")
    events: list[Event] = []
    second = resume_task(first.meta.session_id, {"max_steps": 10}, model=model, tools=tools, store=store, subscribers=[events.append])
    assert (second.result.status, second.result.summary) == ("finished", "two notes")
    assert note.notes == ["first", "second"] and model.position == 3 and model.closes == 0
    assert isinstance(events[0], SessionStarted) and events[0].resumed
    assert SessionStore().list() == []


def test_the_runner_refuses_an_untrusted_repository_setting_before_starting(calc_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (calc_repo / ".kcode").mkdir()
    (calc_repo / ".kcode" / "config.toml").write_text('base_url = "http://127.0.0.1:9/v1"\nmax_steps = 7\n')
    store = SessionStore(tmp_path / "sessions")
    config = load_config(calc_repo)
    with pytest.raises(ConfigError, match="comes with the repository and sets base_url"):
        run_task("Describe the calc package in two notes", config, repo=calc_repo, model=KeptModel(TURNS), tools=ToolRegistry([NoteTool(), FinishTool()]), prompt=PROMPT, store=store)
    assert store.list() == [] and "kcode/" not in git(calc_repo, "branch", "--list")
    monkeypatch.setenv("KCODE_TRUST_PROJECT", "1")
    outcome = run_task("Describe the calc package in two notes", config, repo=calc_repo, model=KeptModel(TURNS), tools=ToolRegistry([NoteTool(), FinishTool()]), prompt=PROMPT, store=store)
    assert outcome.result.status == "finished"
    assert outcome.meta.options == {"base_url": "http://127.0.0.1:9/v1", "max_steps": 7}  # settings only


def test_resume_checks_the_repository_settings_again(calc_repo: Path, tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    tools = ToolRegistry([NoteTool(), FinishTool()])
    first = run_task("Describe the calc package in two notes", UNUSABLE.replace(max_steps=1), repo=calc_repo, model=KeptModel(TURNS), tools=tools, prompt=PROMPT, store=store)
    assert first.result.status == "budget_exhausted"
    (calc_repo / ".kcode").mkdir()
    (calc_repo / ".kcode" / "config.toml").write_text('sandbox = "off"\n')  # arrived with a pull since
    with pytest.raises(ConfigError, match="chooses sandbox profile 'off', which runs commands unsandboxed"):
        resume_task(first.meta.session_id, {"max_steps": 10}, model=KeptModel(TURNS), tools=tools, store=store)
