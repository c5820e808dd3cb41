"""Steering, step interrupts and stops of a run driven in this process
(kcode.agent.live.LocalRunHandle, what the TUI uses), with scripted models and real
commands: messages queue while a step runs and reach the next one; an interrupt ends the
step (a running command is killed, a stream cut) and the run waits for the user; a stop ends
the run as interrupted, and it resumes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kcode.agent.live import LocalRunHandle
from kcode.agent.run_control import RunControl, pending_from_log
from kcode.agent.runner import resume_task, run_task
from kcode.config import Config
from kcode.events import Event, InterruptEvent, MessageAdded, SteeringDelivered, SteeringQueued, TextDelta, ToolCallFinished, ToolCallStarted, TurnCompleted, TurnStarted
from kcode.session import SessionStore

from tests.conftest import write_script

FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}
READ = {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]}


def bash(command: str) -> dict:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}


class Recorder:
    """Every event of the run, and a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, test, timeout: float = 30) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((event for event in self.events if test(event)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; saw {[event.type for event in self.events]}"
                self._changed.wait(left)

    def index(self, test) -> int:
        return next(i for i, event in enumerate(self.events) if test(event))


def handle_for(repo: Path, script: Path) -> tuple[LocalRunHandle, Recorder]:
    handle = LocalRunHandle(Config(model=f"scripted:{script}"), repo=repo)
    recorder = Recorder()
    handle.subscribe(recorder)
    return handle, recorder


def later(action) -> None:
    """Do ``action`` from another thread, as a frontend's key press would."""
    threading.Thread(target=action, daemon=True).start()


def test_a_message_sent_while_a_step_runs_reaches_the_model_at_the_next_step(calc_repo, tmp_path):
    handle, seen = handle_for(calc_repo, write_script(tmp_path / "s.json", [bash("sleep 2"), READ, FINISH, FINISH]))
    handle.subscribe(lambda e: isinstance(e, ToolCallStarted) and e.name == "bash" and later(lambda: handle.steer("keep mul() as it is")))
    handle.steer("review calc")  # no session yet: the first message is the task
    assert handle.wait(60) and handle.outcome.result.status == "finished"
    events = seen.events
    queued = seen.index(lambda e: isinstance(e, SteeringQueued) and e.text == "keep mul() as it is")
    assert queued < seen.index(lambda e: isinstance(e, TurnCompleted) and e.step == 1)  # sent during step 1
    delivered = events[seen.index(lambda e: isinstance(e, SteeringDelivered))]
    assert delivered.step == 2 and delivered.steer_id == events[queued].steer_id
    step2 = seen.index(lambda e: isinstance(e, TurnStarted) and e.step == 2)
    message = next(e.message for e in events[step2:] if isinstance(e, MessageAdded))
    assert message == {"role": "user", "content": "keep mul() as it is"}  # in step 2's prompt, first thing
    assert pending_from_log(SessionStore().log_path(handle.session_id), handle.session_id)[0] == []
    handle.close()


def test_an_interrupt_kills_the_running_command_ends_the_step_and_the_run_waits_for_the_user(calc_repo, tmp_path):
    handle, seen = handle_for(calc_repo, write_script(tmp_path / "s.json", [bash("sleep 30; echo too late"), READ, FINISH, FINISH]))
    handle.subscribe(lambda e: isinstance(e, ToolCallStarted) and "sleep 30" in e.arguments.get("command", "") and later(handle.interrupt_step))
    started = time.monotonic()
    handle.start("review calc")
    seen.wait_for(lambda e: isinstance(e, TurnCompleted) and e.step == 1)
    assert time.monotonic() - started < 20  # the sleep was killed, not waited for
    time.sleep(1.0)
    assert not any(isinstance(e, TurnStarted) and e.step == 2 for e in seen.events) and handle.running  # waiting for the user
    handle.steer("read the file instead")
    assert handle.wait(60) and handle.outcome.result.status == "finished"
    events = seen.events
    assert any(isinstance(e, InterruptEvent) and e.scope == "step" and e.step == 1 for e in events)
    output = next(e.output for e in events if isinstance(e, ToolCallFinished) and e.name == "bash")
    assert "[cancelled; the process group was killed]" in output and "too late" not in output
    user = [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user"]
    assert any("interrupted this step" in text for text in user) and "read the file instead" in user
    assert next(e for e in events if isinstance(e, SteeringDelivered)).step == 2
    handle.close()


def test_an_interrupt_cuts_the_models_stream_and_its_calls_never_run(calc_repo, tmp_path):
    slow = {"content": "Let me think about this at length. " * 60, "chunk_seconds": 0.05, "tool_calls": [{"name": "bash", "arguments": {"command": "touch never-made"}}]}
    handle, seen = handle_for(calc_repo, write_script(tmp_path / "s.json", [slow, FINISH, FINISH]))
    fired = threading.Event()

    def on_text(event: Event) -> None:
        if isinstance(event, TextDelta) and not fired.is_set():
            fired.set()
            later(handle.interrupt_step)

    handle.subscribe(on_text)
    handle.start("review calc")
    seen.wait_for(lambda e: isinstance(e, TurnCompleted) and e.step == 1, timeout=20)
    handle.steer("never mind, just finish")
    assert handle.wait(60) and handle.outcome.result.status == "finished"
    events = seen.events
    assert sum(isinstance(e, TextDelta) and e.step == 1 for e in events) < 30  # cut well before its ~90 chunks
    assert not any(isinstance(e, ToolCallStarted) and e.step == 1 for e in events)
    assert not any(isinstance(e, MessageAdded) and e.message["role"] == "assistant" and "at length" in e.message["content"] for e in events)
    assert not (Path(handle.outcome.meta.workdir) / "never-made").exists()
    handle.close()


def test_a_stop_ends_the_run_as_interrupted_and_a_message_resumes_it(calc_repo, tmp_path):
    handle, seen = handle_for(calc_repo, write_script(tmp_path / "s.json", [bash("sleep 3"), FINISH, FINISH]))
    stopped = threading.Event()

    def stop_once(event: Event) -> None:
        if isinstance(event, ToolCallStarted) and not stopped.is_set():
            stopped.set()
            later(handle.stop)

    handle.subscribe(stop_once)
    handle.start("review calc")
    assert handle.wait(30)
    first = handle.outcome
    assert (first.result.status, first.result.exit_code) == ("interrupted", 130)
    assert SessionStore().read_meta(handle.session_id).status == "interrupted"
    assert any(isinstance(e, InterruptEvent) and e.scope == "run" for e in seen.events)
    handle.steer("carry on")  # no run going: a resume of this session, the message first
    assert handle.wait(60) and handle.outcome.result.status == "finished"
    assert handle.outcome.meta.session_id == first.meta.session_id
    delivered = [e for e in seen.events if isinstance(e, SteeringDelivered)]
    assert [e.text for e in delivered] == ["carry on"] and delivered[0].step == 2  # step 1 ended with its command cancelled
    handle.close()


def test_steering_left_undelivered_when_a_headless_run_ends_reaches_the_resumed_run(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [bash("sleep 2"), FINISH, READ, FINISH])
    control = RunControl()
    seen = Recorder()

    def steer_in_the_last_step(event: Event) -> None:
        if isinstance(event, ToolCallStarted) and event.name == "finish" and event.step == 2:
            control.steer("one more thing")

    outcome = run_task("review calc", Config(model=f"scripted:{script}"), repo=calc_repo, subscribers=[seen, steer_in_the_last_step], control=control)
    assert outcome.result.status == "finished" and not any(isinstance(e, SteeringDelivered) for e in seen.events)
    log = SessionStore().log_path(outcome.meta.session_id)
    assert [text for _, text in pending_from_log(log, outcome.meta.session_id)[0]] == ["one more thing"]
    again = Recorder()
    resumed = resume_task(outcome.meta.session_id, subscribers=[again])  # a new process would do the same: from the log
    assert resumed.result.status == "finished"
    assert [(e.text, e.step) for e in again.events if isinstance(e, SteeringDelivered)] == [("one more thing", 3)]


def test_an_interrupt_sent_between_two_steps_ends_the_next_one_and_the_run_waits(calc_repo, tmp_path):
    # sent when step 1 has completed (its TurnCompleted, on the run's thread) and step 2 has
    # not started: it used to cancel step 1's spent token, and step 2 ran as if nothing came
    handle, seen = handle_for(calc_repo, write_script(tmp_path / "s.json", [bash("echo one"), bash("echo two"), FINISH, FINISH]))
    handle.subscribe(lambda e: isinstance(e, TurnCompleted) and e.step == 1 and handle.interrupt_step())
    handle.start("review calc")
    seen.wait_for(lambda e: isinstance(e, TurnCompleted) and e.step == 2)
    time.sleep(1.0)
    assert not any(isinstance(e, TurnStarted) and e.step == 3 for e in seen.events) and handle.running  # waiting for the user
    assert not any(isinstance(e, ToolCallStarted) and e.step == 2 for e in seen.events)  # step 2 ended before its model call
    handle.interrupt_step()  # while it waits: nothing to interrupt, and it says so
    seen.wait_for(lambda e: e.type == "error" and "nothing to interrupt" in e.message)
    handle.steer("go on")
    assert handle.wait(60) and handle.outcome.result.status == "finished"
    events = seen.events
    assert [e.step for e in events if isinstance(e, InterruptEvent)] == [1]
    assert [(e.step, e.output.splitlines()[0]) for e in events if isinstance(e, ToolCallFinished) and e.name == "bash"] == [(1, "one"), (3, "two")]
    assert next(e for e in events if isinstance(e, SteeringDelivered)).step == 3
    handle.close()


def test_a_compact_command_on_the_channel_compacts_a_headless_run_when_its_next_step_starts(calc_repo, tmp_path):
    from kcode.events import Compaction
    from kcode.session.control import ControlWriter

    big = [bash(f"seq {n} {n + 3000}") for n in (1, 5000, 9000)]
    script = write_script(tmp_path / "s.json", [*big, bash("echo one"), bash("echo two"), bash("sleep 2"), FINISH])
    seen = Recorder()
    store = SessionStore()

    def ask_on_the_channel(event: Event) -> None:  # as `kcode attach` would, from another process
        if isinstance(event, ToolCallStarted) and "sleep" in event.arguments.get("command", ""):
            writer = ControlWriter(store.dir(event.agent_id))
            writer.send("compact")
            writer.close()

    outcome = run_task("review calc", Config(model=f"scripted:{script}"), repo=calc_repo, subscribers=[seen, ask_on_the_channel])
    assert outcome.result.status == "finished"
    (compaction,) = [e for e in seen.events if isinstance(e, Compaction)]
    assert compaction.step == 7 and compaction.strategy == "summarize" and compaction.tokens_after < compaction.tokens_before / 2
    notice = seen.index(lambda e: e.type == "error" and "compaction requested" in e.message)
    assert seen.index(lambda e: isinstance(e, TurnStarted) and e.step == 7) > notice
