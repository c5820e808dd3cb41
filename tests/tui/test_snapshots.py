"""SVG snapshots of the TUI at a pinned size (pytest-textual-snapshot), on a session log with
fixed times: what a finished session looks like when attached, and the approval modal.
Update them with ``pytest tests/tui/test_snapshots.py --snapshot-update`` after a deliberate
change of the look."""

from __future__ import annotations

from pathlib import Path

from kcode.events import (
    ApprovalRequested,
    AssistantMessage,
    Checkpoint,
    Compaction,
    EventBus,
    ReasoningDelta,
    SessionFinished,
    SessionStarted,
    TestsRun,
    TextDelta,
    TodoUpdated,
    ToolCallFinished,
    ToolCallStarted,
    TurnStarted,
    Usage,
)
from kcode.session import SessionLog, SessionMeta, SessionStore
from kcode.session.control import AttachedRunHandle
from kcode.tui.app import KcodeApp
from kcode.tui.prompt import History
from tests.tui.conftest import until

SIZE = (100, 34)
T0 = 1_700_000_000.0


def _session(events: list, session_id: str = "20240101-000000-abcdef") -> Path:
    store = SessionStore()
    meta = SessionMeta(session_id=session_id, task="Fix the failing test", repo="/repo", workdir="/repo", branch=f"kcode/{session_id}",
                       base_commit="0" * 40, model="qwen2.5-coder-1.5b", mode="worktree", status="finished")  # fmt: skip
    store.write_meta(meta)
    log = SessionLog(store.log_path(session_id))
    bus = EventBus(agent_id=session_id)
    bus.subscribe(log)
    for event in events:
        bus.emit(event)
    log.close()
    return store.dir(session_id)


def _story(session_id: str = "20240101-000000-abcdef") -> list:
    t = iter(T0 + i for i in range(1000))
    return [
        SessionStarted(session_id=session_id, task="Fix the failing test", repo="/repo", workdir="/repo", branch=f"kcode/{session_id}", base_commit="0" * 40,
                       model="qwen2.5-coder-1.5b", context_window=32768, sandbox="workspace-write", max_steps=100, max_time=3600.0, ts=next(t)),  # fmt: skip
        TurnStarted(step=1, ts=next(t)),
        ReasoningDelta(step=1, text="The add function subtracts.", ts=next(t)),
        TextDelta(step=1, text="I'll **read** `calc/__init__.py` first.", ts=next(t)),
        AssistantMessage(step=1, content="I'll **read** `calc/__init__.py` first.", reasoning="The add function subtracts.", ts=next(t)),
        ToolCallStarted(step=1, call_id="c1", name="run_tests", arguments={}, ts=next(t)),
        ToolCallFinished(step=1, call_id="c1", name="run_tests", arguments={}, output="$ pytest -q\nF.\nFAILED tests/test_calc.py::test_add\n1 failed, 1 passed", is_error=True, duration_ms=1840.0, ts=next(t)),
        TestsRun(step=1, command="pytest -q", ok=False, passed=1, failed=1, failing=["tests/test_calc.py::test_add"], ts=next(t)),
        Usage(step=1, input_tokens=4200, cached_input_tokens=3900, output_tokens=60, ts=next(t)),
        TurnStarted(step=2, ts=next(t)),
        TodoUpdated(step=2, items=[{"text": "find the bug", "status": "done"}, {"text": "fix add", "status": "in_progress"}], ts=next(t)),
        ToolCallStarted(step=2, call_id="c2", name="edit_file", arguments={"path": "calc/__init__.py"}, ts=next(t)),
        ToolCallFinished(step=2, call_id="c2", name="edit_file", arguments={"path": "calc/__init__.py"}, output="edited calc/__init__.py", duration_ms=12.0, ts=next(t)),
        Checkpoint(step=2, commit="1" * 40, ref="refs/kcode/x", ts=next(t)),
        Compaction(step=2, strategy="summary", tokens_before=30000, tokens_after=6000, ts=next(t)),
        SessionStarted(session_id="sub-1", task="check the other functions", repo="/repo", workdir="/repo", branch="b", base_commit="0" * 40,
                       model="qwen2.5-coder-1.5b", agent_id="sub-1", parent_id=session_id, ts=next(t)),  # fmt: skip
        ToolCallFinished(step=1, call_id="s1", name="read_file", arguments={"path": "calc/ops.py"}, output="...", agent_id="sub-1", parent_id=session_id, ts=next(t)),
        SessionFinished(status="finished", summary="mul is fine", exit_code=0, steps=1, duration_ms=900.0, agent_id="sub-1", parent_id=session_id, ts=next(t)),
        Usage(step=2, input_tokens=6100, cached_input_tokens=5800, output_tokens=40, ts=next(t)),
    ]


def _app(session_dir: Path) -> KcodeApp:
    return KcodeApp(AttachedRunHandle(session_dir, read_only=True), history=History(None))


def test_an_attached_session(snap_compare):
    story = _story()
    story.append(SessionFinished(status="finished", summary="Fixed add(); tests pass.", exit_code=0, steps=2, duration_ms=42000.0, ts=T0 + 60))
    app = _app(_session(story))

    async def caught_up(pilot) -> None:
        await until(pilot, lambda: app.transcript.status.state == "finished" and not app.inbox)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=caught_up)


def test_the_approval_modal(snap_compare):
    story = _story()
    story.append(ApprovalRequested(request_id="r1", command="pip install requests", reason="the command asks for the network", needs="network", ts=T0 + 50))
    app = _app(_session(story))

    async def asked(pilot) -> None:
        await until(pilot, lambda: type(app.screen).__name__ == "ApprovalScreen")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=asked)
