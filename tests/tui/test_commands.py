"""The slash commands on a real session (scripted model, real git): each does what its name
says, and one that cannot says why."""

from __future__ import annotations


import asyncio

from kcode.agent.compaction import HANDOFF_HEADER
from kcode.events import Compaction, ToolCallStarted, TurnStarted
from kcode.session import SessionStore, read_events
from kcode.tui.commands import COMMANDS, help_text
from tests.conftest import FIX_TURNS, git
from tests.tui.conftest import FINISH, SIZE, bash, blocks, local_app, run, screen_text, typed, until

TODO = {"tool_calls": [{"name": "todo", "arguments": {"items": [{"text": "read calc", "status": "done"}, {"text": "fix add", "status": "in_progress"}]}}]}


async def _command(pilot, text: str) -> None:
    await typed(pilot, text)
    await pilot.press("enter")
    await pilot.pause(0.2)


def _said(app) -> str:
    return "\n".join(b.text for b in blocks(app) if b.title == "kcode")


def test_help_lists_only_commands_that_work():
    text = help_text()
    for name in ("help", "model", "compact", "undo", "rewind", "sessions", "resume", "diff", "apply", "todo", "skills", "cost", "clear", "quit"):
        assert f"/{name}" in text and name in COMMANDS
    assert set(COMMANDS) == {"help", "model", "compact", "undo", "rewind", "sessions", "resume", "diff", "apply", "todo", "skills", "cost", "clear", "quit"}


def test_compact_summarizes_the_conversation_at_the_next_step_and_a_marker_shows(calc_repo, tmp_path):
    big = [bash(f"seq {n} {n + 3000}") for n in (1, 5000, 9000)]  # three long outputs to compact away
    small = [bash("echo one"), bash("echo two")]  # with the sleeping call: the last messages, kept verbatim
    app = local_app(calc_repo, [*big, *small, bash("sleep 4; echo slept"), FINISH], tmp_path, task="go")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(b.status == "running" and "sleep" in b.title for b in blocks(app, "tool")), what="the sleeping call")
            assert not blocks(app, "compaction")
            await _command(pilot, "/compact")
            assert "compaction requested" in _said(app)
            (marker,) = await until(pilot, lambda: blocks(app, "compaction"), what="the compaction")
            await until(pilot, lambda: app.transcript.status.state == "finished", what="the run's end")
            await pilot.pause(0.3)
            assert "context compacted (summarize)" in screen_text(app)
            return marker

    marker = asyncio.run(go())
    log = list(read_events(SessionStore().log_path(app.transcript.status.session_id)))
    (event,) = [e for e in log if isinstance(e, Compaction)]
    assert event.strategy == "summarize" and event.tokens_after < event.tokens_before / 2  # the three outputs went into a short note
    assert f"{event.tokens_before:,} → {event.tokens_after:,} tokens" in marker.text
    started = [e.step for e in log if isinstance(e, TurnStarted)]
    sleeping = next(e.step for e in log if isinstance(e, ToolCallStarted) and "sleep" in e.arguments["command"])
    assert event.step == sleeping + 1 and event.step in started  # done when the step after the request began
    context = str(event.messages)
    assert HANDOFF_HEADER in context and "2500\\n2501" not in context and "echo two" in context  # the old outputs left the context


def test_slash_commands_on_a_finished_session(calc_repo, tmp_path, kcode_home):
    skill = kcode_home / "config" / "skills" / "tidy-imports"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("---\nname: tidy-imports\ndescription: Sort and prune Python imports.\n---\nRun ruff --fix.\n")
    app = local_app(calc_repo, [TODO, *FIX_TURNS], tmp_path, task="Fix the failing test")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.transcript.status.state == "finished" and not app.handle.running, what="the run's end")
            await _command(pilot, "/help")
            assert any(b.kind == "markup" and "/rewind STEP" in b.text for b in blocks(app))
            await _command(pilot, "/model")
            assert "model: scripted:" in _said(app) and "window 262,144 tokens" in _said(app)
            await _command(pilot, "/todo")
            assert "[x] read calc" in _said(app) and "[~] fix add" in _said(app)
            await _command(pilot, "/cost")
            assert "tokens: " in _said(app) and "evaluated" in _said(app) and "6 steps" in _said(app)
            await _command(pilot, "/skills")
            assert "tidy-imports (user): Sort and prune Python imports." in _said(app)
            await _command(pilot, "/compact")
            assert "/compact: no run is going on" in _said(app)
            await _command(pilot, "/nope")
            assert "no command /nope" in _said(app)

            await _command(pilot, "/diff")
            assert type(app.screen).__name__ == "DiffScreen" and "+    return a + b" in screen_text(app)
            await pilot.press("s")
            assert "-    return a - b" in screen_text(app) and "│ +    return a + b" in screen_text(app)  # side by side
            await pilot.press("escape")
            await _command(pilot, "/diff 9")
            assert "no checkpoint at step 9" in _said(app)

            await _command(pilot, "/apply")
            assert "1 files brought over" in _said(app)
            assert "return a + b" in (calc_repo / "calc" / "__init__.py").read_text()

            await _command(pilot, "/undo")  # back to before the last checkpointed step (4: the edit)
            assert "back at step 3" in _said(app)
            branch = app.transcript.status.branch
            assert "return a - b" in git(calc_repo, "show", f"{branch}:calc/__init__.py")

            await _command(pilot, "/sessions")
            assert type(app.screen).__name__ == "PickerScreen" and app.transcript.status.session_id in screen_text(app)
            await pilot.press("escape")

            await _command(pilot, "/clear")
            assert app.conversation.mounted_turns() == []
            await _command(pilot, "/quit")
        return app.return_value

    assert run_value(go) == 0


def test_commands_that_change_files_wait_for_the_run_to_stop(calc_repo, tmp_path):
    app = local_app(calc_repo, [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 20"}}]}, *FIX_TURNS], tmp_path, task="go")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(b.status == "running" for b in blocks(app, "tool")))
            await _command(pilot, "/apply")
            await _command(pilot, "/rewind 0")
            await _command(pilot, "/resume")
            said = _said(app)
            assert "/apply needs the run stopped first" in said and "/rewind needs the run stopped first" in said and "/resume needs this run stopped first" in said
            app.handle.stop()

    run(go())


def test_resume_opens_a_session_with_its_past_and_a_message_continues_it(calc_repo, tmp_path):
    first = local_app(calc_repo, [FIX_TURNS[0], {"content": "Stopping here.", "tool_calls": [{"name": "finish", "arguments": {"summary": "half"}}]},
                                  {"content": "Continued.", "tool_calls": [{"name": "finish", "arguments": {"summary": "all"}}]}], tmp_path, task="What does calc do?")  # fmt: skip
    # a question: a finish without changes is taken at once (a task asking for a change would
    # see its first empty finish sent back, kcode.agent.verify)

    async def go():
        async with first.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: first.transcript.status.state == "finished" and not first.handle.running)
            session = first.transcript.status.session_id
            await _command(pilot, f"/resume {session}")
            assert first.transcript.status.session_id == session  # the past, from the log
            assert [b.text for b in blocks(first, "finished")] == ["half"]
            await _command(pilot, "go on")
            await until(pilot, lambda: [b.text for b in blocks(first, "finished")] == ["half", "all"], what="the resumed run's end")

    run(go())


def run_value(go) -> object:
    import asyncio

    return asyncio.run(go())
