"""The TUI on a real run (kcode.agent.live.LocalRunHandle, a scripted model, real git and
commands), driven with Textual's Pilot: streaming, tool cards, steering, interrupts, stop,
an approval."""

from __future__ import annotations


import time

from textual import events

from kcode.events import ApprovalResolved, InterruptEvent, MessageAdded, SteeringDelivered
from kcode.session import SessionStore, read_events
from kcode.tui.blocks import OUTPUT_HEIGHT
from tests.conftest import FIX_TURNS
from tests.tui.conftest import FINISH, SIZE, bash, blocks, local_app, run, screen_text, typed, until


def _log(app) -> list:
    return list(read_events(SessionStore().log_path(app.transcript.status.session_id)))


TURNS = [  # one test run only: pytest under the sandbox is the slow part of a scripted run
    {"content": "Reading the code first.", "reasoning": "Look at calc.", "tool_calls": [{"name": "read_file", "arguments": {"path": "calc/missing.py"}}]},
    FIX_TURNS[0],
    FIX_TURNS[2],
    {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
    {"content": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Fixed add(); tests pass."}}]},
]


def test_a_task_streams_to_the_end_with_tool_cards_tests_and_a_checkpoint(calc_repo, tmp_path):
    app = local_app(calc_repo, TURNS, tmp_path, task="Fix the failing test")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.transcript.status.state == "finished", what="the run's end")
            await pilot.pause(0.3)
            tools = blocks(app, "tool")
            assert [(b.title.split(":")[0], b.status) for b in tools] == [
                ("read_file", "error"), ("read_file", "ok"), ("edit_file", "ok"), ("run_tests", "ok"), ("finish", "ok")]  # fmt: skip
            assert all(b.duration_ms >= 0 for b in tools) and tools[3].duration_ms > 0
            text = screen_text(app)
            assert "✓ tests pass 2 passed, 0 failed" in text and "■ finished after 5 steps" in text
            assert "All done." not in text and "Done." in text  # the scripted answer, as Markdown
            status = " ".join(text.splitlines()[-2:])  # the status line (two rows at this width)
            assert "step 5/1000" in status and "sandbox workspace-write" in status and "⎇ kcode/" in status and "ctx " in status
            # the failed call's card is open; the others are folded, and open with enter
            cards = list(app.query("ToolCard"))
            assert [c.has_class("open") for c in cards] == [True, False, False, False, False]
            cards[1].focus()
            await pilot.press("enter")
            assert cards[1].has_class("open") and cards[1].output_lines() == tools[1].output.splitlines()[-OUTPUT_HEIGHT:]
            await pilot.press("o")  # the whole output, one key away
            assert type(app.screen).__name__ == "TextScreen" and "return a - b" in screen_text(app)
            await pilot.press("escape")
            assert type(app.screen).__name__ == "Screen"
            (checkpoint,) = app.query("CheckpointView")
            checkpoint.focus()
            await pilot.press("enter")  # the step's diff, from git
            await until(pilot, lambda: "+    return a + b" in str(checkpoint.query_one(".body").render()), what="the checkpoint's diff")
            app.conversation.scroll_to_widget(checkpoint, animate=False, top=True)
            await until(pilot, lambda: "+    return a + b" in screen_text(app), what="the diff on screen")

    run(go())
    assert app.exit_code_of_run() == 0


def test_streamed_text_is_merged_per_tick_not_per_delta(calc_repo, tmp_path):
    long = "# Plan\n\n" + " ".join(f"word{i}" for i in range(400)) + "\n\n```python\nprint('x')\n```\n"
    app = local_app(calc_repo, [{"content": long, "reasoning": "think " * 50, "tool_calls": FINISH["tool_calls"]}], tmp_path, task="plan it")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.transcript.status.state == "finished")
            await pilot.pause(0.3)
            (assistant,) = blocks(app, "assistant")
            assert assistant.text == long and assistant.version > 20  # many deltas...
            view = app.conversation.views[id(assistant)]
            assert view.drawn == assistant.version and app.frames < assistant.version  # ...fewer redraws
            assert "▶ reasoning (50 words)" in str(view.render_block().renderables[0])
            await pilot.press("ctrl+r")
            assert "think think" in str(view.render_block().renderables[0])

    run(go())


def test_typing_while_a_step_runs_steers_the_next_step(calc_repo, tmp_path):
    app = local_app(calc_repo, [bash("sleep 5; echo slept"), FINISH], tmp_path, task="go")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(b.status == "running" for b in blocks(app, "tool")), what="the bash call")
            await typed(pilot, "also check mul")
            await pilot.press("enter")
            queued = await until(pilot, lambda: [b for b in blocks(app, "user") if b.text == "also check mul"], what="the queued message")
            assert queued[0].status in ("queued", "delivered")  # (on a loaded machine the step may be over already)
            await until(pilot, lambda: app.transcript.status.state == "finished")
            assert queued[0].status == "delivered"

    run(go())
    log = _log(app)
    delivered = next(i for i, e in enumerate(log) if isinstance(e, SteeringDelivered))
    queued = next(i for i, e in enumerate(log) if e.type == "steering.queued")
    bash_done = next(i for i, e in enumerate(log) if e.type == "tool.finished")
    assert queued < delivered and log[delivered].step > 1  # queued while a step ran, delivered when a later one started
    assert bash_done < delivered
    assert any(isinstance(e, MessageAdded) and e.message.get("role") == "user" and "also check mul" in str(e.message.get("content")) for e in log[delivered:])


def test_esc_interrupts_the_step_and_the_run_waits_for_a_message(calc_repo, tmp_path):
    app = local_app(calc_repo, [bash("sleep 30"), FINISH, FINISH], tmp_path, task="go")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(b.status == "running" for b in blocks(app, "tool")), what="the bash call")
            started = time.monotonic()
            await pilot.pause(0.5)
            await pilot.press("escape")
            await until(pilot, lambda: app.transcript.status.state == "waiting", what="the interrupt")
            (card,) = blocks(app, "tool")
            await until(pilot, lambda: card.status != "running", what="the killed command")
            assert time.monotonic() - started < 15 and "waiting for you" in " ".join(screen_text(app).splitlines()[-2:])
            await pilot.pause(1.2)  # not a double esc
            await typed(pilot, "finish now")
            await pilot.press("enter")
            await until(pilot, lambda: app.transcript.status.outcome == "finished", what="the run's end")

    run(go())
    assert any(isinstance(e, InterruptEvent) and e.scope == "step" for e in _log(app))


def test_esc_esc_stops_the_run(calc_repo, tmp_path):
    app = local_app(calc_repo, [bash("sleep 30"), FINISH], tmp_path, task="go")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: any(b.status == "running" for b in blocks(app, "tool")))
            for _ in range(2):  # a quick double press, as a terminal sends it (Pilot's press waits in between)
                app.post_message(events.Key("escape", None))
            await until(pilot, lambda: app.transcript.status.state == "finished", what="the stop")
            assert app.transcript.status.outcome == "interrupted"

    run(go())
    assert any(isinstance(e, InterruptEvent) and e.scope == "run" for e in _log(app))


def test_an_approval_is_asked_in_a_modal_and_answered_through_the_handle(calc_repo, tmp_path):
    # a command that fails in the sandbox for want of the network asks for it (kcode.tools.shell)
    turns = [bash("echo fetched; python3 -c \"import socket; socket.getaddrinfo('example.com', 80)\""), FINISH]
    app = local_app(calc_repo, turns, tmp_path, task="fetch", approvals="on-request")

    async def go():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: type(app.screen).__name__ == "ApprovalScreen", what="the approval modal")
            await until(pilot, lambda: "network access" in screen_text(app) and "echo fetched" in screen_text(app), what="the question on screen")
            await pilot.press("d")  # deny, with a reason
            await typed(pilot, "no downloads")
            await pilot.press("enter")
            await until(pilot, lambda: app.transcript.status.state == "finished")
            (block,) = blocks(app, "approval")
            assert (block.status, block.meta["answer"]) == ("deny", "no downloads")

    run(go())
    resolved = [e for e in _log(app) if isinstance(e, ApprovalResolved)]
    assert [(e.decision, e.reason) for e in resolved] == [("deny", "no downloads")]
    outputs = [e.output for e in _log(app) if e.type == "tool.finished" and e.name == "bash"]
    assert "no downloads" in outputs[0]
