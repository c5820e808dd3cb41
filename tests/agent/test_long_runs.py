"""Long-run behaviour through the real runner: compaction, guards, the edit-test cycle,
budgets, rewind."""

from __future__ import annotations

from kcode.agent.compaction import HANDOFF_HEADER, CompactionPolicy, compact, mask_observations
from kcode.agent.recovery import recover
from kcode.agent.runner import resume_task, rewind_session, run_task
from kcode.config import Config
from kcode.events import Compaction, MessageAdded, ToolCallFinished
from kcode.llm.scripted import ScriptedModel
from kcode.session import SessionStore

from tests.conftest import git, write_script


def run(repo, turns, tmp_path, **config):
    script = write_script(tmp_path / "script.json", turns)
    events = []
    outcome = run_task("Review the code and keep calm", Config(model=f"scripted:{script}", **config), repo=repo, subscribers=[events.append])
    return outcome, events


def user_notes(events):
    return [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user"]


def test_mask_observations_keeps_the_last_outputs():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "t"}]
    for n in range(5):
        messages += [{"role": "assistant", "content": "", "tool_calls": [{"id": str(n), "name": "read_file", "arguments": {}}]},
                     {"role": "tool", "tool_call_id": str(n), "name": "read_file", "content": f"output {n}\n" * 50}]
    masked, count = mask_observations(messages, keep=2)
    assert count == 3
    assert [m["content"].startswith("[output omitted") for m in masked if m["role"] == "tool"] == [True, True, True, False, False]
    assert masked[:2] == messages[:2]


def test_summary_keeps_system_task_and_tail_and_never_splits_a_call():
    model = ScriptedModel([], context_window=2000)
    messages = [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": "TASK"}]
    for n in range(30):
        messages += [{"role": "assistant", "content": f"step {n}", "tool_calls": [{"id": str(n), "name": "bash", "arguments": {"command": f"echo {n}"}}]},
                     {"role": "tool", "tool_call_id": str(n), "name": "bash", "content": "x" * 400}]
    policy = CompactionPolicy(context_window=2000, reserve_output=200, keep_last_messages=5)
    result = compact(messages, model, policy, [{"text": "fix it", "status": "in_progress"}])
    assert result.strategy == "summarize" and result.tokens_after < result.tokens_before
    assert result.messages[:2] == messages[:2]
    handoff = result.messages[2]
    assert handoff["role"] == "user" and handoff["content"].startswith(HANDOFF_HEADER)
    assert "[~] fix it" in handoff["content"] and "echo" in handoff["content"]
    assert result.messages[3]["role"] == "assistant"  # the tail starts at a call, not at its result
    assert result.messages[-1] == messages[-1]


def test_small_context_run_compacts_and_keeps_task_and_todo(calc_repo, tmp_path):
    (calc_repo / "big.txt").write_text("".join(f"line {n} " + "padding " * 10 + "\n" for n in range(400)))
    turns = [{"tool_calls": [{"name": "todo", "arguments": {"items": [{"text": "read everything", "status": "in_progress"}]}}]}]
    turns += [{"tool_calls": [{"name": "read_file", "arguments": {"path": "big.txt", "offset": 1 + 10 * n, "limit": 10}}]} for n in range(30)]
    turns += [{"tool_calls": [{"name": "finish", "arguments": {"summary": "read it all"}}]}]
    outcome, events = run(calc_repo, turns, tmp_path, context_window=4096, pack="none")
    assert outcome.result.status == "finished" and outcome.result.steps == 32
    compactions = [e for e in events if isinstance(e, Compaction)]
    assert compactions, "a 4K window must compact"
    for event in compactions:
        assert event.tokens_after < event.tokens_before
        assert event.messages[2]["content"] == "Review the code and keep calm"  # the task, verbatim
    summaries = [e for e in compactions if e.strategy == "summarize"]
    assert summaries and "read everything" in summaries[-1].messages[3]["content"]


def test_repeated_call_warns_then_forces_a_change(calc_repo, tmp_path):
    turns = [{"tool_calls": [{"name": "list_files", "arguments": {"path": "."}}]} for _ in range(12)]
    turns += [{"tool_calls": [{"name": "finish", "arguments": {"summary": "stopped looping"}}]}]
    outcome, events = run(calc_repo, turns, tmp_path)
    notes = user_notes(events)
    assert sum("same tool call 3 times" in n for n in notes) == 1
    assert sum("same tool call 5 times" in n for n in notes) == 1
    assert sum("same tool call 8 times" in n for n in notes) == 1
    assert any("Stopped a loop" in n for n in notes)
    forced = [e for e in events if isinstance(e, Compaction)]
    assert len(forced) == 1 and forced[0].step == 12
    assert outcome.result.status == "finished"


def test_no_progress_stops_with_a_summary(calc_repo, tmp_path):
    turns = [{"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py", "offset": 1 + n % 5, "limit": 1}}]} for n in range(20)]
    outcome, events = run(calc_repo, turns, tmp_path, stuck_steps=4)
    assert outcome.result.status == "budget_exhausted" and outcome.result.steps == 8
    assert "no progress for 8 steps" in outcome.result.summary
    assert any("No file has changed" in n for n in user_notes(events))


def test_finish_after_an_edit_runs_the_tests_and_is_sent_back_while_they_fail(calc_repo, tmp_path):
    turns = [
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a * b", "new": "return b * a"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "premature"}}]},
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
        {"content": "I believe it works now."},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "fixed"}}]},
    ]
    outcome, events = run(calc_repo, turns, tmp_path)
    auto = [e for e in events if isinstance(e, ToolCallFinished) and e.call_id.startswith("auto_tests_")]
    assert [e.step for e in auto] == [2, 4]
    assert auto[0].is_error and not auto[1].is_error
    notes = user_notes(events)
    assert any("You called finish, but the last test run failed" in n for n in notes)
    assert outcome.result.status == "finished" and outcome.result.summary == "fixed" and outcome.result.steps == 5
    assert outcome.tests["ok"]


def test_token_budget(calc_repo, fix_script):
    events = []
    outcome = run_task("fix", Config(model=f"scripted:{fix_script}", max_tokens=1200), repo=calc_repo, subscribers=[events.append])
    assert outcome.result.status == "budget_exhausted" and "tokens budget exhausted" in outcome.result.summary
    assert {e.fraction for e in events if e.type == "budget.warning" and e.budget == "tokens"} >= {0.5}


def test_rewind_restores_files_and_conversation_then_resume_goes_on(calc_repo, fix_script):
    first = run_task("fix", Config(model=f"scripted:{fix_script}"), repo=calc_repo)
    assert first.result.status == "finished"
    sid = first.meta.session_id
    calc = f"{first.meta.branch}:calc/__init__.py"  # the result is on the branch: the run's work tree is gone
    assert not first.workspace.path.exists()
    assert "return a + b" in git(calc_repo, "show", calc)
    meta, event = rewind_session(sid, 2)
    assert (event.to_step, event.from_step) == (2, 5)
    assert "return a - b" in git(calc_repo, "show", calc)  # the step-3 edit is undone
    assert git(calc_repo, "rev-parse", event.abandoned_ref).strip() != event.commit
    state = recover(SessionStore().log_path(sid))
    assert state.step == 2
    assert [m["role"] for m in state.last.conversation()] == ["system", "system", "user", "assistant", "tool", "assistant", "tool"]
    events = []
    again = resume_task(sid, subscribers=[events.append])
    assert again.result.status == "finished" and again.result.steps == 5
    assert [e.step for e in events if e.type == "turn.started"] == [3, 4, 5]
    assert "return a + b" in git(calc_repo, "show", calc)
    log_types = [line for line in SessionStore().log_path(sid).read_text().splitlines() if '"type":"turn.started"' in line]
    assert len(log_types) == 8  # the abandoned steps 3-5 stay in the log, then 3-5 again


def test_chaos_long_run_finishes(calc_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("KCODE_CHAOS_SEED", "5")
    turns = [{"tool_calls": [{"name": "write_file", "arguments": {"path": f"out/f{n}.txt", "content": f"{n}\n"}}]} for n in range(40)]
    turns += [{"tool_calls": [{"name": "finish", "arguments": {"summary": "wrote 40 files"}}]}]
    script = write_script(tmp_path / "s.json", turns)
    outcome = run_task("write", Config(model=f"chaos:0.3:scripted:{script}", auto_test=False), repo=calc_repo)
    assert outcome.result.status == "finished", outcome.result.summary
    written = git(calc_repo, "ls-tree", "--name-only", f"{outcome.meta.branch}:out").split()
    assert sorted(written) == sorted(f"f{n}.txt" for n in range(40))




def test_summarizing_compaction_repacks_the_repository_as_it_is_now(calc_repo, tmp_path):
    (calc_repo / "big.txt").write_text("".join(f"line {n} " + "padding " * 10 + "\n" for n in range(400)))
    git(calc_repo, "add", "big.txt")
    git(calc_repo, "commit", "-qm", "big")
    turns = [{"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}]
    turns += [{"tool_calls": [{"name": "read_file", "arguments": {"path": "big.txt", "offset": 1 + 10 * n, "limit": 10}}]} for n in range(30)]
    turns += [{"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}]
    outcome, events = run(calc_repo, turns, tmp_path, context_window=6144, pack_budget=600, auto_test=False)
    assert outcome.result.status == "finished"
    fixed, repository = [e.message["content"] for e in events if isinstance(e, MessageAdded)][:2]
    assert "return a - b" in repository
    summaries = [e for e in events if isinstance(e, Compaction) and e.strategy == "summarize"]
    assert summaries
    assert summaries[0].messages[0]["content"] == fixed  # the fixed prompt stays
    assert "return a + b" in summaries[0].messages[1]["content"] and "return a - b" not in summaries[0].messages[1]["content"]
    assert len([e for e in events if e.type == "context.packed"]) == 1 + len(summaries)
