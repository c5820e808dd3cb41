"""A finish is checked before it ends the run: no empty finishes, none right after failing tests."""

from __future__ import annotations

import pytest

from kcode.agent.runner import run_task
from kcode.agent.verify import asks_for_change
from kcode.config import Config
from kcode.events import MessageAdded
from tests.conftest import write_script

FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "Nothing was wrong."}}]}
RUN_TESTS = {"tool_calls": [{"name": "run_tests", "arguments": {}}]}
READ = {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]}


def _run(repo, tmp_path, task, turns):
    script = write_script(tmp_path / "script.json", turns)
    events = []
    outcome = run_task(task, Config(model=f"scripted:{script}"), repo=repo, subscribers=[events.append])
    notes = [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user"][1:]
    return outcome, notes


@pytest.mark.parametrize("task, expected", [
    ("Fix the failing test in calc", True),
    ("add() returns the wrong result for negative numbers", True),
    ("QuerySet.union() raises TypeError when ordering by an annotation", True),
    ("Add a --json flag to the export command", True),
    ("Why does test_add fail?", False),
    ("Explain how the parser handles escapes", False),
    ("What does calc.mul do?", False),
    ("Review the calc package", False),
    ("Why does add() fail? Fix it.", True),
    ("", False),
])  # fmt: skip
def test_asks_for_change(task, expected):
    assert asks_for_change(task) is expected


def test_an_empty_finish_is_sent_back_exactly_once(calc_repo, tmp_path):
    outcome, notes = _run(calc_repo, tmp_path, "Fix the failing test in calc", [READ, FINISH, FINISH])
    sent_back = [n for n in notes if "nothing in the repository has changed" in n]
    assert len(sent_back) == 1 and "reproduce the problem" in sent_back[0]
    assert outcome.result.status == "finished" and outcome.result.steps == 3
    assert outcome.result.summary == "Nothing was wrong. (no changes)"


def test_a_question_is_answered_without_changes(calc_repo, tmp_path):
    outcome, notes = _run(calc_repo, tmp_path, "What does calc.mul do?", [READ, FINISH])
    assert outcome.result.status == "finished" and outcome.result.steps == 2 and notes == []
    assert outcome.result.summary == "Nothing was wrong."


def test_a_finish_right_after_the_models_own_failing_test_run_is_sent_back(calc_repo, tmp_path):
    edit = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a * b", "new": "return b * a"}}]}
    fix = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}
    # the model runs the tests itself (they fail: add still subtracts), then finishes at once
    outcome, notes = _run(calc_repo, tmp_path, "Fix the failing test in calc", [edit, RUN_TESTS, FINISH, fix, RUN_TESTS, FINISH])
    sent_back = [n for n in notes if "the last test run failed" in n]
    assert len(sent_back) == 1 and "tests/test_calc.py" in sent_back[0]
    assert outcome.result.status == "finished" and outcome.result.steps == 6 and outcome.tests["ok"]


def test_a_finish_with_failing_tests_is_accepted_after_two_send_backs(calc_repo, tmp_path):
    edit = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a * b", "new": "return b * a"}}]}
    outcome, notes = _run(calc_repo, tmp_path, "Fix the failing test in calc", [edit, RUN_TESTS, FINISH, FINISH, FINISH])
    assert len([n for n in notes if "the last test run failed" in n]) == 2
    assert outcome.result.status == "finished" and outcome.result.steps == 5 and not outcome.tests["ok"]


def test_after_an_answer_without_a_tool_call_the_next_step_must_call_one(calc_repo, tmp_path, monkeypatch):
    """The loop asks a local model (one with ``require_tool_call``) for a constrained step."""
    from kcode.agent import runner
    from kcode.llm.scripted import ScriptedModel

    script = write_script(tmp_path / "s.json", [{"content": "Here is the fix: ```python\nreturn a + b\n```"}, READ, FINISH])
    required = []

    class LocalLike(ScriptedModel):
        require_tool_call = False

        def stream(self, messages, tools, *, cancel=None):
            required.append(self.require_tool_call)
            yield from super().stream(messages, tools, cancel=cancel)

    monkeypatch.setattr(runner, "_model", lambda config, session_id, on_notice=None: LocalLike.from_file(script))
    outcome = run_task("What does calc.mul return?", Config(model="scripted:unused"), repo=calc_repo)
    assert outcome.result.status == "finished", outcome.result.summary
    assert required == [False, True, False]
