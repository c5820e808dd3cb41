"""``Agent`` on its own: a scripted model, the default tools, ``LocalSandbox`` in a plain
folder. No git repository, no work tree, no bubblewrap: the PATH the run sees holds bash
and nothing else, so neither git nor bwrap could be started."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from kcode.agent.loop import Agent, Budget
from kcode.cancel import CancelToken
from kcode.events import Event, EventBus, ToolCallFinished, ToolCallStarted
from kcode.llm.scripted import ScriptedModel
from kcode.sandbox import LocalSandbox
from kcode.tools import default_tools
from kcode.tools.base import SessionState, ToolContext

TURNS = [
    {"content": "Writing the greeting.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greeting.txt", "content": "hello\n"}}]},
    {"tool_calls": [
        {"name": "edit_file", "arguments": {"path": "greeting.txt", "old": "hello", "new": "hello world"}},
        {"name": "bash", "arguments": {"command": 'read -r line < greeting.txt; echo "it says: $line"'}},
    ]},
    {"tool_calls": [{"name": "list_files", "arguments": {}}]},
    {"content": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greeting.txt says hello world"}}]},
]  # fmt: skip


@pytest.fixture
def bash_only_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PATH with bash and nothing else (the sandbox runs ``bash -c``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    bash = shutil.which("bash")
    assert bash is not None
    (bin_dir / "bash").symlink_to(bash)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("git") is None and shutil.which("bwrap") is None
    return str(bin_dir)


def make_agent(root: Path, turns: list[dict], events: list[Event], cancel: CancelToken | None = None) -> Agent:
    bus = EventBus()
    bus.subscribe(events.append)
    ctx = ToolContext(root=root, sandbox=LocalSandbox(root), state=SessionState(), cancel=cancel or CancelToken())
    messages = [{"role": "system", "content": "You edit files."}, {"role": "user", "content": "Greet the world."}]
    return Agent(ScriptedModel(turns), default_tools(), ctx, bus, None, messages, Budget(max_steps=10))


def test_a_scripted_run_without_git_or_bubblewrap(tmp_path: Path, bash_only_path: str) -> None:
    root = tmp_path / "project"
    root.mkdir()
    events: list[Event] = []
    agent = make_agent(root, TURNS, events)
    result = agent.run()
    assert os.environ["PATH"] == bash_only_path
    assert not (root / ".git").exists()
    assert (result.status, result.steps, result.summary) == ("finished", 4, "greeting.txt says hello world")
    assert (root / "greeting.txt").read_text() == "hello world\n"
    finished = [event for event in events if isinstance(event, ToolCallFinished)]
    assert [(event.name, event.is_error) for event in finished] == [
        ("write_file", False), ("edit_file", False), ("bash", False), ("list_files", False), ("finish", False),
    ]  # fmt: skip
    outputs = {event.name: event.output for event in finished}
    assert "it says: hello world" in outputs["bash"]
    assert outputs["list_files"] == "1 files\ngreeting.txt"  # listed from the folder: there is no git
    # the conversation the model saw: the opening messages, then each step's call and results
    tool_messages = [message for message in agent.messages if message["role"] == "tool"]
    assert [message["name"] for message in tool_messages] == ["write_file", "edit_file", "bash", "list_files", "finish"]
    assert [event.type for event in events][-1] == "session.finished"


def test_cancelling_the_parent_token_stops_an_agent_holding_a_child(tmp_path: Path, bash_only_path: str) -> None:
    """The agent's context holds a child of the caller's token; cancelling the caller's
    token (here, as the first tool call finishes) ends the run after that step."""
    parent = CancelToken()
    events: list[Event] = []
    agent = make_agent(tmp_path, TURNS, events, cancel=parent.child())

    def cancel_after_the_first_tool(event: Event) -> None:
        if isinstance(event, ToolCallFinished):
            parent.cancel()

    agent.bus.subscribe(cancel_after_the_first_tool)
    result = agent.run()
    assert (result.status, result.steps, result.exit_code) == ("interrupted", 1, 130)
    assert agent.ctx.cancel.cancelled and parent.cancelled
    assert (tmp_path / "greeting.txt").read_text() == "hello\n"  # the second step never ran


SLOW_TURNS = [
    {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 30; echo too late"}}]},
    {"tool_calls": [{"name": "bash", "arguments": {"command": "echo after the interrupt"}}]},
    {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]},
]


def _when_the_sleep_starts(agent: Agent, action) -> None:
    """Run ``action`` in another thread once the slow call has started (as a frontend's
    key press would come)."""

    def started(event: Event) -> None:
        if isinstance(event, ToolCallStarted) and "sleep 30" in event.arguments.get("command", ""):
            threading.Thread(target=action, daemon=True).start()

    agent.bus.subscribe(started)


def test_interrupting_a_tool_call_stops_it_and_the_run_goes_on(tmp_path: Path) -> None:
    events: list[Event] = []
    run_token = CancelToken()
    agent = make_agent(tmp_path, SLOW_TURNS, events, cancel=run_token)
    assert agent.interrupt_tool_call() is False  # no call is running

    def interrupt() -> None:
        while not agent.interrupt_tool_call():  # until the call's own token exists
            time.sleep(0.01)

    _when_the_sleep_starts(agent, interrupt)
    started = time.monotonic()
    result = agent.run()
    assert time.monotonic() - started < 20
    assert (result.status, result.steps) == ("finished", 3) and not run_token.cancelled
    outputs = [event.output for event in events if isinstance(event, ToolCallFinished)]
    assert "[cancelled; the process group was killed]" in outputs[0] and "too late" not in outputs[0]
    assert "after the interrupt" in outputs[1]
    assert agent.interrupt_tool_call() is False


def test_cancelling_the_run_stops_the_running_tool_call(tmp_path: Path) -> None:
    events: list[Event] = []
    run_token = CancelToken()
    agent = make_agent(tmp_path, SLOW_TURNS, events, cancel=run_token)
    _when_the_sleep_starts(agent, lambda: (time.sleep(0.3), run_token.cancel()))
    started = time.monotonic()
    result = agent.run()
    assert time.monotonic() - started < 20
    assert (result.status, result.steps) == ("interrupted", 1)
    [finished] = [event for event in events if isinstance(event, ToolCallFinished)]
    assert "[cancelled; the process group was killed]" in finished.output
