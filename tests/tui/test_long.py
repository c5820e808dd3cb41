"""A long session in the TUI: attaching to its log catches up and mounts only a window of the
latest turns; the older ones are folded behind a marker, come back when the user scrolls up
to them, and fold away again at the end."""

from __future__ import annotations

from kcode.events import AssistantMessage, EventBus, SessionFinished, SessionStarted, TextDelta, ToolCallFinished, ToolCallStarted, TurnCompleted, TurnStarted
from kcode.session import SessionLog, SessionMeta, SessionStore
from kcode.session.control import AttachedRunHandle
from kcode.tui.app import KcodeApp
from kcode.tui.conversation import BATCH, CAP, MAX_BLOCKS, WINDOW
from kcode.tui.prompt import History
from tests.tui.conftest import SIZE, run, screen_text, until

TURNS = 300


def _long_session() -> AttachedRunHandle:
    store = SessionStore()
    session_id = "20240101-000000-long00"
    store.write_meta(SessionMeta(session_id=session_id, task="a long task", repo="/repo", workdir="/repo", branch="kcode/long", base_commit="0" * 40,
                                 model="scripted", mode="worktree", status="finished"))  # fmt: skip
    log = SessionLog(store.log_path(session_id))
    bus = EventBus(agent_id=session_id)
    bus.subscribe(log)
    bus.emit(SessionStarted(session_id=session_id, task="a long task", repo="/repo", workdir="/repo", branch="kcode/long", base_commit="0" * 40, model="scripted"))
    for step in range(1, TURNS + 1):
        bus.emit(TurnStarted(step=step))
        bus.emit(TextDelta(step=step, text=f"Step {step}: looking again."))
        bus.emit(AssistantMessage(step=step, content=f"Step {step}: looking again."))
        bus.emit(ToolCallStarted(step=step, call_id=f"c{step}", name="bash", arguments={"command": f"echo {step}"}))
        bus.emit(ToolCallFinished(step=step, call_id=f"c{step}", name="bash", arguments={"command": f"echo {step}"}, output=f"{step}\n", duration_ms=5.0))
        bus.emit(TurnCompleted(step=step))
    bus.emit(SessionFinished(status="finished", summary="done", exit_code=0, steps=TURNS, duration_ms=1.0))
    log.close()
    return AttachedRunHandle(store.dir(session_id), read_only=True)


def test_attach_mounts_a_window_and_older_turns_come_back_on_scroll(kcode_home):
    app = KcodeApp(_long_session(), history=History(None))

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            view = app.conversation
            await until(pilot, lambda: app.transcript.status.state == "finished" and not app.inbox and view.mounted_turns(), what="the catch-up")
            await pilot.pause(0.3)
            last = len(app.transcript.turns) - 1
            window = view.mounted_turns()
            assert window[-1] == last and len(window) <= WINDOW and len(view.views) <= MAX_BLOCKS
            assert "Step 300: looking again." in screen_text(app) and "earlier turns folded" in str(view.marker.render())
            assert app.frames <= 3  # the catch-up is drawn once it is done, not step by step
            # scrolled to the top, the previous turns are mounted again (page up there: more)
            view.scroll_home(animate=False)
            await until(pilot, lambda: view.mounted_turns()[0] < window[0], what="the unfold on scroll")
            assert view.mounted_turns()[0] == window[0] - BATCH
            await pilot.pause(0.3)
            view.focus()
            view.scroll_home(animate=False)
            await pilot.pause(0.1)
            await pilot.press("pageup")
            await until(pilot, lambda: view.mounted_turns()[0] <= window[0] - 2 * BATCH, what="page up at the top")
            shown = view.mounted_turns()
            assert len(shown) <= CAP and all(view.views[id(b)].is_mounted for b in app.transcript.turns[shown[0]].blocks)
            view.scroll_to_widget(view.turn_views[shown[0] + 1], animate=False, top=True)
            await until(pilot, lambda: f"Step {shown[0] + 1}: looking again." in screen_text(app), what="an unfolded turn on screen")
            # back at the end, the window alone is mounted again
            view.refold()
            await pilot.pause(0.3)
            assert view.mounted_turns() == window and view.scroll_y == view.max_scroll_y

    run(go())
