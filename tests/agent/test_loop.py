"""The loop driven by scripted models, through the same runner the CLI uses."""

from __future__ import annotations

import inspect
import threading

from kcode.agent import loop
from kcode.agent.runner import resume_task, run_task
from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.events import ErrorEvent, MessageAdded

from tests.conftest import write_script


def run(repo, script, **config):
    events = []
    outcome = run_task("Review the calc package", Config(model=f"scripted:{script}", **config), repo=repo, subscribers=[events.append])
    return outcome, events


def test_fix_run_finishes_with_passing_tests(calc_repo, fix_script):
    outcome, events = run(calc_repo, fix_script)
    assert outcome.result.status == "finished" and outcome.result.exit_code == 0
    assert outcome.tests["ok"] and outcome.tests["passed"] == 2
    assert outcome.changed_files == [{"path": "calc/__init__.py", "kind": "update"}]
    types = [e.type for e in events]
    assert types[0] == "session.started" and types[-1] == "session.finished"
    assert types.count("checkpoint") == 1 and types.count("turn.completed") == 5


def test_malformed_call_is_reported_and_never_stored(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [
        {"content": "oops", "tool_calls": [{"name": "read_file", "arguments": '{"path": "calc/__init__.py"'}]},
        {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "ok"}}]},
    ])
    outcome, events = run(calc_repo, script)
    assert outcome.result.status == "finished"
    messages = [e.message for e in events if isinstance(e, MessageAdded)]
    first_assistant = next(m for m in messages if m["role"] == "assistant")
    assert first_assistant["tool_calls"] == [] and first_assistant["content"] == "oops"
    feedback = messages[messages.index(first_assistant) + 1]
    assert feedback["role"] == "user" and "could not be used" in feedback["content"] and "not valid JSON" in feedback["content"]
    assert any(isinstance(e, ErrorEvent) and e.kind == "format_error" for e in events)
    # every stored tool call has its result: the conversation stays valid for any API
    calls = [c["id"] for m in messages if m["role"] == "assistant" for c in m["tool_calls"]]
    results = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert calls == results


def test_text_only_turn_gets_a_nudge(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [{"content": "I think it's done"}, {"tool_calls": [{"name": "finish", "arguments": {"summary": "ok"}}]}])
    outcome, events = run(calc_repo, script)
    nudges = [e.message for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user" and "did not call a tool" in e.message["content"]]
    assert outcome.result.status == "finished" and len(nudges) == 1


def test_step_budget_stops_cleanly_with_exit_code_3(calc_repo, fix_script):
    outcome, events = run(calc_repo, fix_script, max_steps=2)
    assert outcome.result.status == "budget_exhausted" and outcome.result.exit_code == 3
    assert outcome.result.steps == 2
    assert [e.fraction for e in events if e.type == "budget.warning"] == [0.5]


def test_model_running_out_of_turns_is_an_error_not_a_hang(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [{"tool_calls": [{"name": "list_files", "arguments": {}}]}])
    outcome, _ = run(calc_repo, script)
    assert outcome.result.status == "error" and outcome.result.exit_code == 1
    assert "no turns left" in outcome.result.summary


def test_chaos_at_30_percent_still_finishes(calc_repo, fix_script, monkeypatch):
    monkeypatch.setenv("KCODE_CHAOS_SEED", "3")
    events = []
    outcome = run_task("fix", Config(model=f"chaos:0.3:scripted:{fix_script}"), repo=calc_repo, subscribers=[events.append])
    assert outcome.result.status == "finished" and outcome.tests["ok"]
    kinds = {e.kind for e in events if isinstance(e, ErrorEvent)}
    assert "model_retry" in kinds or "format_error" in kinds


def test_cancel_interrupts_a_running_command(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 60"}}]}])
    cancel = CancelToken()
    threading.Timer(1.0, cancel.cancel).start()
    outcome = run_task("wait", Config(model=f"scripted:{script}"), repo=calc_repo, cancel=cancel)
    assert outcome.result.status == "interrupted" and outcome.result.exit_code == 130
    assert outcome.result.duration < 20


def test_resume_continues_with_the_next_scripted_turn(calc_repo, fix_script):
    first, _ = run(calc_repo, fix_script, max_steps=2)
    assert first.result.status == "budget_exhausted"
    events = []
    second = resume_task(first.meta.session_id, {"max_steps": 10}, subscribers=[events.append])
    assert second.result.status == "finished" and second.result.steps == 5
    assert [e.step for e in events if e.type == "turn.started"] == [3, 4, 5]
    assert second.tests["ok"]


def test_repository_pack_is_in_the_stable_prefix(calc_repo, fix_script):
    outcome, events = run(calc_repo, fix_script)
    head = [e.message for e in events if isinstance(e, MessageAdded)][:3]
    assert [m["role"] for m in head] == ["system", "system", "user"]  # fixed prompt, repository, task
    fixed, repository = head[0]["content"], head[1]["content"]
    assert "<file path=" not in fixed  # the same in every repository
    assert '<file path="calc/__init__.py">' in repository and "return a - b" in repository
    packed = next(e for e in events if e.type == "context.packed")
    assert packed.files_whole >= 3 and 0 < packed.tokens <= packed.budget
    # the prefix never changes while the conversation grows
    systems = [e.message for e in events if isinstance(e, MessageAdded) and e.message["role"] == "system"]
    assert len(systems) == 2


def test_pack_none_leaves_the_repository_out(calc_repo, fix_script):
    _, events = run(calc_repo, fix_script, pack="none")
    head = [e.message for e in events if isinstance(e, MessageAdded)][:2]
    assert all("<file path=" not in m["content"] for m in head)
    assert not any(e.type == "context.packed" for e in events)


def test_plan_reminder_is_stored_on_a_tool_result_so_every_request_extends_the_last(calc_repo, tmp_path, monkeypatch):
    """Every few steps the plan is appended to the step's last tool result, and stored: each
    request is the previous one plus new messages (a local model's KV cache covers it all)."""
    from kcode.agent import runner
    from kcode.agent.plan_reminder import PLAN_REMINDER_EVERY
    from kcode.llm.scripted import ScriptedModel

    listing = {"tool_calls": [{"name": "list_files", "arguments": {}}]}
    script = write_script(tmp_path / "s.json", [
        {"tool_calls": [{"name": "todo", "arguments": {"items": [{"text": "fix add", "status": "in_progress"}]}}]},
        *[listing] * (PLAN_REMINDER_EVERY + 2),
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "ok"}}]},
    ])  # fmt: skip
    prompts = []

    class Recording(ScriptedModel):
        def stream(self, messages, tools, *, cancel=None):
            prompts.append([dict(m) for m in messages])
            yield from super().stream(messages, tools, cancel=cancel)

    monkeypatch.setattr(runner, "_model", lambda config, session_id, on_notice=None: Recording.from_file(script))
    events = []
    outcome = run_task("Review the plan", Config(model="scripted:unused"), repo=calc_repo, subscribers=[events.append])
    assert outcome.result.status == "finished"
    for before, after in zip(prompts, prompts[1:]):
        assert after[: len(before)] == before  # only ever extended
    reminded = [i for i, prompt in enumerate(prompts) if "Current plan" in str(prompt[-1].get("content"))]
    # step 1 is the todo call (its result shows the plan); the reminder comes PLAN_REMINDER_EVERY steps later
    assert reminded == [1 + PLAN_REMINDER_EVERY]
    assert prompts[reminded[0]][-1]["role"] == "tool" and prompts[reminded[0]][-1]["content"].endswith("[~] fix add")
    stored = [e.message for e in events if isinstance(e, MessageAdded)]
    assert sum("Current plan" in str(m.get("content")) for m in stored) == 1  # in the log too: a resume sees the same


def test_answers_without_tool_calls_end_a_verified_run(calc_repo, tmp_path):
    """A small model that "finishes" by writing a made-up tool result: after its edit passed
    the tests, a second answer in a row without a tool call ends the run as finished."""
    fake = "<tool_response>\nfinish: files changed\n</tool_response>"
    script = write_script(tmp_path / "s.json", [
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
        {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"content": fake},
        {"content": fake},
        {"content": "never reached"},
    ])  # fmt: skip
    outcome, events = run(calc_repo, script)
    assert outcome.result.status == "finished" and outcome.result.exit_code == 0 and outcome.result.steps == 4
    assert outcome.result.summary.startswith(fake) and "answered 2 times without calling a tool" in outcome.result.summary
    nudges = [e for e in events if isinstance(e, MessageAdded) and "did not call a tool" in str(e.message.get("content"))]
    assert len(nudges) == 1


def test_answers_without_tool_calls_stop_an_unverified_run(calc_repo, tmp_path):
    """Without passing tests the same answers are nudged, then the run stops (exit 3)."""
    script = write_script(tmp_path / "s.json", [{"content": "I believe add() is fine."}] * 6)
    outcome, events = run(calc_repo, script)
    assert outcome.result.status == "budget_exhausted" and outcome.result.exit_code == 3
    assert outcome.result.steps == 4 and "4 answers in a row without a tool call" in outcome.result.summary
    nudges = [e for e in events if isinstance(e, MessageAdded) and "did not call a tool" in str(e.message.get("content"))]
    assert len(nudges) == 3


def test_empty_answers_end_a_verified_run_with_a_summary_of_the_changes(calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
        {"tool_calls": [{"name": "run_tests", "arguments": {}}]},
        {"content": ""},
        {"content": ""},
    ])  # fmt: skip
    outcome, _ = run(calc_repo, script)
    assert outcome.result.status == "finished" and outcome.result.exit_code == 0
    assert outcome.result.summary.startswith("Changed calc/__init__.py; 2 tests pass.")


def test_the_loop_reads_in_one_sitting():
    """The loop stays short (verification, budgets, the plan reminder and the guards are
    their own modules): the module at most 300 lines, one step at most 40."""
    assert len(inspect.getsource(loop).splitlines()) <= 300
    assert len(inspect.getsource(loop.Agent._step).splitlines()) <= 40


BLIND_EDIT = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}
TESTS_THEN_FINISH = [{"tool_calls": [{"name": "run_tests", "arguments": {}}]},
                     {"tool_calls": [{"name": "finish", "arguments": {"summary": "Fixed add()."}}]}]


def _tool_outputs(events):
    return [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "tool"]


def test_an_edit_of_a_file_the_model_has_not_seen_is_shown_first_then_made(calc_repo, tmp_path):
    """Without the pack, the model has seen no file: its first edit shows the code around
    `old` instead of changing it; the same call again goes through."""
    script = write_script(tmp_path / "blind.json", [BLIND_EDIT, BLIND_EDIT, *TESTS_THEN_FINISH])
    outcome, events = run(calc_repo, script, pack="none")
    outputs = _tool_outputs(events)
    assert "not edited: you have not read this file yet" in outputs[0] and ">\t    return a - b" in outputs[0]
    assert outputs[1].startswith("edited calc/__init__.py")
    assert outcome.result.status == "finished" and outcome.tests["ok"]


def test_a_file_packed_whole_counts_as_seen(calc_repo, tmp_path):
    script = write_script(tmp_path / "packed.json", [BLIND_EDIT, *TESTS_THEN_FINISH])
    outcome, events = run(calc_repo, script)
    assert _tool_outputs(events)[0].startswith("edited calc/__init__.py")
    assert outcome.result.status == "finished" and outcome.tests["ok"]
