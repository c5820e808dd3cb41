"""What the loop does for small local models: an answer cut at the output cap ends the step
with a note, and the next step is constrained to a tool call."""

from __future__ import annotations

from kcode.agent.runner import run_task
from kcode.config import Config, load_config
from kcode.events import MessageAdded, TurnCompleted
from kcode.llm.scripted import ScriptedModel
from tests.conftest import write_script

READ = {"tool_calls": [{"name": "read_file", "arguments": {"path": "calc/__init__.py"}}]}
FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "mul returns a * b."}}]}
PROSE = "Let me explain the whole design of the calculator in great detail. " * 40


class LocalLike(ScriptedModel):
    """A scripted model that, like the llama.cpp backend, can be told to call a tool."""

    require_tool_call = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.required: list[bool] = []

    def stream(self, messages, tools, *, cancel=None):
        self.required.append(self.require_tool_call)
        yield from super().stream(messages, tools, cancel=cancel)


def _run(repo, tmp_path, monkeypatch, turns, task="What does calc.mul return?"):
    from kcode.agent import runner

    model = LocalLike.from_file(write_script(tmp_path / "s.json", turns))
    monkeypatch.setattr(runner, "_model", lambda config, session_id, on_notice=None: model)
    events = []
    outcome = run_task(task, Config(model="scripted:unused"), repo=repo, subscribers=[events.append])
    notes = [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "user"][1:]
    return outcome, notes, model, events


def test_an_answer_cut_at_the_output_cap_gets_a_note_and_the_next_step_must_call_a_tool(calc_repo, tmp_path, monkeypatch):
    cut = {"content": PROSE, "finish_reason": "length"}
    outcome, notes, model, events = _run(calc_repo, tmp_path, monkeypatch, [cut, READ, FINISH])
    assert outcome.result.status == "finished" and outcome.result.steps == 3, outcome.result.summary
    assert len(notes) == 1 and "cut off" in notes[0] and "edit_file" in notes[0]
    tokens = next(e for e in events if isinstance(e, TurnCompleted) and e.step == 1).output_tokens
    assert f"limit of {tokens} tokens" in notes[0]
    assert model.required == [False, True, False]


def test_a_tool_call_cut_at_the_cap_is_reported_as_cut_and_as_unusable(calc_repo, tmp_path, monkeypatch):
    cut_call = {"tool_calls": [{"name": "write_file", "arguments": '{"path": "calc/big.py", "content": "def f'}], "finish_reason": "length"}
    outcome, notes, model, _ = _run(calc_repo, tmp_path, monkeypatch, [cut_call, READ, FINISH])
    assert outcome.result.status == "finished"
    assert "cut off" in notes[0] and "could not be used" in notes[0]
    assert model.required == [False, False, False]  # a call was made: the grammar starts at its opener


def test_an_answer_that_ends_by_itself_gets_no_cut_note(calc_repo, tmp_path, monkeypatch):
    outcome, notes, model, _ = _run(calc_repo, tmp_path, monkeypatch, [{"content": "mul multiplies."}, READ, FINISH])
    assert outcome.result.status == "finished"
    assert len(notes) == 1 and "cut off" not in notes[0] and "did not call a tool" in notes[0]
    assert model.required == [False, True, False]


def test_constrained_tool_calls_are_the_default_and_can_be_turned_off(tmp_path):
    assert Config().llamacpp.constrain_tools is True
    assert load_config(tmp_path, {"constrain_tools": False}, environ={}).llamacpp.constrain_tools is False
    assert load_config(tmp_path, {}, environ={"KCODE_CONSTRAIN_TOOLS": "off"}).llamacpp.constrain_tools is False
