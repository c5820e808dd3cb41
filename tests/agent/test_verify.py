"""A finish is checked before it ends the run: no empty finishes, none right after failing tests."""

from __future__ import annotations

import json

import pytest

from kcode.agent.plan_reminder import PlanReminder
from kcode.agent.runner import resume_task, run_task
from kcode.agent.verify import TestRun, Verification, asks_for_change, asks_for_fix
from kcode.config import Config
from kcode.events import MessageAdded
from kcode.session import SessionStore
from tests.conftest import write_script

FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "Nothing was wrong."}}]}
RUN_TESTS = {"tool_calls": [{"name": "run_tests", "arguments": {}}]}
READ = {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]}
SWAP_MUL = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a * b", "new": "return b * a"}}]}


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
    assert outcome.result.status == "finished" and outcome.result.steps == 2
    assert not [n for n in notes if "only add new files" in n]
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


def test_a_local_model_cannot_finish_or_overwrite_before_looking_nor_finish_soon_after_an_empty_send_back(calc_repo, tmp_path, monkeypatch):
    """On a task that asks for a change, a local model's grammar leaves ``finish`` and
    ``write_file`` out until the model has looked at something, and ``finish`` out of the
    steps after an empty finish was sent back; other steps offer all. A question leaves them
    in throughout."""
    from kcode.agent import runner
    from kcode.llm.scripted import ScriptedModel

    withheld = []

    class LocalLike(ScriptedModel):
        withheld_tools = frozenset()

        def stream(self, messages, tools, *, cancel=None):
            withheld.append(sorted(self.withheld_tools))
            yield from super().stream(messages, tools, cancel=cancel)

    def go(task, turns):
        withheld.clear()
        script = write_script(tmp_path / "s.json", turns)
        monkeypatch.setattr(runner, "_model", lambda config, session_id, on_notice=None: LocalLike.from_file(script))
        return run_task(task, Config(model="scripted:unused"), repo=calc_repo).result

    result = go("Fix the failing test in calc", [READ, FINISH, READ, FINISH])
    assert result.status == "finished" and result.summary.endswith("(no changes)")
    # finish stays out after the send-back (the scripted model finishes anyway: the second
    # finish is accepted); the second read repeats the first with nothing changed since, so
    # the loop guard withholds read_file too
    assert withheld == [["finish", "write_file"], [], ["finish"], ["finish", "read_file"]]
    bad_edit = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a -- b", "new": "x"}}]}
    fix = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}
    result = go("Fix the failing test in calc", [bad_edit, READ, FINISH, RUN_TESTS, fix, FINISH])
    assert result.status == "finished" and not result.summary.endswith("(no changes)"), result.summary
    # a failed edit is not looking; after the send-back finish is out for three steps, or
    # (here) until files change
    assert withheld == [["finish", "write_file"], ["finish", "write_file"], [], ["finish"], ["finish"], []]
    result = go("What does calc.mul return?", [READ, FINISH])
    assert result.status == "finished" and withheld == [[], []]
    # a resumed session keeps whether the model had looked
    again = Verification.restore({"verify": Verification(task="fix it", looked=True).saved()}, task="fix it")
    assert again.looked and not again.withheld_tools()
    assert Verification.restore({}, task="fix it").withheld_tools() == {"finish", "write_file"}


def test_a_finish_sent_back_leaves_every_call_with_its_result(calc_repo, tmp_path):
    """The finish tool raises; its call still gets its result stored before the note."""
    script = write_script(tmp_path / "script.json", [READ, FINISH, FINISH])
    events = []
    outcome = run_task("Fix the failing test in calc", Config(model=f"scripted:{script}"), repo=calc_repo, subscribers=[events.append])
    assert outcome.result.status == "finished" and outcome.result.steps == 3
    messages = [e.message for e in events if isinstance(e, MessageAdded)]
    calls = [c["id"] for m in messages if m["role"] == "assistant" for c in m["tool_calls"]]
    assert calls == [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    first = next(i for i, m in enumerate(messages) if m.get("name") == "finish")
    assert messages[first]["content"] == "finished"
    assert messages[first + 1]["role"] == "user" and "nothing in the repository has changed" in messages[first + 1]["content"]


def test_state_saved_by_older_sessions_still_loads():
    """Before typed state the agent state was flat, with the last test run as a list."""
    old = {
        "guard": {"streak": 1},
        "edited_since_tests": True,
        "last_tests": [False, 1, 1, 0, ["tests/test_calc.py::test_add"]],
        "text_only": 3,
        "plan_reminded": 7,
        "finish_blocks": 1,  # older still: the failing send-backs before finish_review
    }
    verification = Verification.restore(old, task="fix it")
    assert verification.last_tests == TestRun(ok=False, passed=1, failed=1, errors=0, failing=("tests/test_calc.py::test_add",))
    assert verification.edited_since_tests and verification.review.failing_sent_back == 1
    assert verification.text_only == 0  # a resumed run gets its nudges again
    assert verification.failing_files() == ["tests/test_calc.py"]
    assert PlanReminder.restore(old).shown_at == 7
    again = Verification.restore({"verify": verification.saved()})
    assert again.saved() == verification.saved() and again.last_tests == verification.last_tests


def test_a_session_saved_in_the_old_form_resumes_where_it_stopped(calc_repo, tmp_path):
    """A log written before typed state: resume still knows the failing tests and that one
    finish was sent back, so the next finish is sent back once more, then accepted."""
    script = write_script(tmp_path / "script.json", [SWAP_MUL, RUN_TESTS, FINISH, FINISH, FINISH])
    first = run_task("Fix the failing test in calc", Config(model=f"scripted:{script}", max_steps=3), repo=calc_repo)
    assert first.result.status == "budget_exhausted" and first.result.steps == 3
    log = SessionStore().log_path(first.meta.session_id)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    for event in events:
        if event["type"] == "turn.completed":
            state = event["agent_state"]
            tests = state["verify"]["last_tests"]
            event["agent_state"] = {
                "guard": state["guard"],
                "edited_since_tests": state["verify"]["edited_since_tests"],
                "last_tests": tests and [tests["ok"], tests["passed"], tests["failed"], tests["errors"], tests["failing"]],
                "text_only": 0,
                "plan_reminded": state["plan"]["shown_at"],
                "finish_review": state["verify"]["finish_review"],
            }
    assert events[-1]["type"] == "session.finished" and any(e["type"] == "turn.completed" for e in events)
    log.write_text("".join(json.dumps(event) + "\n" for event in events))
    resumed = []
    second = resume_task(first.meta.session_id, {"max_steps": 10}, subscribers=[resumed.append])
    notes = [e.message["content"] for e in resumed if isinstance(e, MessageAdded) and e.message["role"] == "user"]
    sent_back = [n for n in notes if "the last test run failed" in n]
    assert len(sent_back) == 1 and "tests/test_calc.py::test_add" in sent_back[0]
    assert second.result.status == "finished" and second.result.steps == 5  # a lost state accepts it at step 4


def test_a_resumed_run_gets_its_nudges_again(calc_repo, tmp_path):
    """Three answers without a tool call, then a budget stop; the session's steps saved in the
    old flat form, which counted them (``text_only``). The resumed run's first answer
    without a tool call is nudged (a fourth in a row would stop the run), and it goes on."""
    text = {"content": "I think add() is fine."}
    fix = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}
    script = write_script(tmp_path / "script.json", [text, text, text, text, fix, RUN_TESTS, FINISH])
    first = run_task("Fix the failing test in calc", Config(model=f"scripted:{script}", max_steps=3), repo=calc_repo)
    assert (first.result.status, first.result.steps) == ("budget_exhausted", 3)
    log = SessionStore().log_path(first.meta.session_id)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    for event in events:
        if event["type"] == "turn.completed":
            event["agent_state"] = {"guard": event["agent_state"]["guard"], "text_only": 3}
    log.write_text("".join(json.dumps(event) + "\n" for event in events))
    resumed = []
    second = resume_task(first.meta.session_id, {"max_steps": 10}, subscribers=[resumed.append])
    notes = [e.message["content"] for e in resumed if isinstance(e, MessageAdded) and e.message["role"] == "user"]
    assert sum("did not call a tool" in note for note in notes) == 1
    assert (second.result.status, second.result.steps) == ("finished", 7)


REPRO = {"tool_calls": [{"name": "write_file", "arguments": {"path": "repro.py", "content": "from calc import mul\nprint(mul(-2, 3))\n"}}]}


@pytest.fixture
def passing_calc(calc_repo):
    """The calc package with add fixed: its own tests pass (the bug to fix is not covered by them)."""
    from tests.conftest import git

    init = calc_repo / "calc" / "__init__.py"
    init.write_text(init.read_text().replace("return a - b", "return a + b"))
    git(calc_repo, "commit", "-qam", "fix add")
    return calc_repo


def test_a_finish_that_only_added_a_reproduction_script_is_sent_back_once(passing_calc, tmp_path):
    fix = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a * b", "new": "return b * a"}}]}
    outcome, notes = _run(passing_calc, tmp_path, "mul() gives wrong results for negative numbers", [REPRO, FINISH, fix, FINISH])
    sent_back = [n for n in notes if "only add new files" in n]
    assert len(sent_back) == 1 and "(repro.py)" in sent_back[0] and "edit_file" in sent_back[0]
    assert outcome.result.status == "finished" and outcome.result.steps == 4
    assert {c["path"] for c in outcome.changed_files} == {"repro.py", "calc/__init__.py"}


def test_after_the_send_back_a_second_finish_with_only_new_files_is_accepted(passing_calc, tmp_path):
    outcome, notes = _run(passing_calc, tmp_path, "mul() gives wrong results for negative numbers", [REPRO, FINISH, FINISH])
    assert len([n for n in notes if "only add new files" in n]) == 1
    assert outcome.result.status == "finished" and outcome.result.steps == 3


def test_new_files_the_task_names_or_a_question_are_accepted_at_once(passing_calc, tmp_path):
    outcome, notes = _run(passing_calc, tmp_path, "Write repro.py, a script that shows what mul(-2, 3) returns", [REPRO, FINISH])
    assert outcome.result.status == "finished" and outcome.result.steps == 2
    assert not [n for n in notes if "only add new files" in n]
    outcome, notes = _run(passing_calc, tmp_path, "What does calc.mul return for negative numbers?", [REPRO, FINISH])
    assert outcome.result.steps == 2 and not [n for n in notes if "only add new files" in n]


def test_the_added_only_send_back_is_saved_with_the_step():
    task = "fix the crash in calc"
    verification = Verification(task=task)
    assert verification.review.added_only(task, ["repro.py"]) is not None
    again = Verification.restore({"verify": verification.saved()}, task=task)
    assert again.review.added_only_sent_back and again.review.added_only(task, ["repro.py"]) is None


@pytest.mark.parametrize("task, expected", [
    ("mul() gives wrong results for negative numbers", True),
    ("Fix the failing test in calc", True),
    ("QuerySet.union() raises TypeError when ordering by an annotation", True),
    ("parse_date doesn't handle time zones", True),
    ("Add a --json flag to the export command", False),
    ("write", False),
    ("Why does test_add fail?", False),  # a question
])  # fmt: skip
def test_asks_for_fix(task, expected):
    assert asks_for_fix(task) is expected


def test_a_feature_built_from_new_files_only_is_accepted_at_once(passing_calc, tmp_path):
    outcome, notes = _run(passing_calc, tmp_path, "Add a small script that prints mul(-2, 3)", [REPRO, FINISH])
    assert outcome.result.status == "finished" and outcome.result.steps == 2
    assert not [n for n in notes if "only add new files" in n]


def test_a_run_without_editing_tools_finishes_without_changes_at_once(calc_repo, tmp_path):
    """An explore sub-agent's tools cannot change files: its finish without changes is its
    answer, not sent back, even on a task worded as a fix."""
    from kcode.tools import default_tools

    script = write_script(tmp_path / "s.json", [READ, FINISH])
    events = []
    tools = default_tools().without("edit_file", "write_file")
    outcome = run_task("Fix the failing test in calc", Config(model=f"scripted:{script}"), repo=calc_repo, tools=tools, subscribers=[events.append])
    assert outcome.result.status == "finished" and outcome.result.steps == 2, outcome.result.summary
    notes = [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user"][1:]
    assert not any("nothing in the repository has changed" in note for note in notes)


def test_a_test_command_that_ran_no_test_is_neither_a_result_nor_progress(calc_repo, tmp_path):
    """The 1.5B ran `tests/test_x.py` as a command (permission denied): that cleared the loop
    guard as "a new test result" and its finish was sent back for a failure that said nothing."""
    broken = {"tool_calls": [{"name": "run_tests", "arguments": {"command": "tests/test_calc.py"}}]}
    edit = {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]}
    outcome, notes = _run(calc_repo, tmp_path, "Fix the failing test in calc", [edit, broken, FINISH])
    assert not [n for n in notes if "the last test run failed" in n]
    assert outcome.result.status == "finished" and outcome.result.steps == 3
    verification = Verification(task="Fix it")
    ran_nothing = {"tests": {"ok": False, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failing": [], "exit_code": 126}}
    assert verification._note_tests([type("R", (), {"data": ran_nothing})()]) is False and verification.last_tests is None
