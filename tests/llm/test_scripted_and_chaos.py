from __future__ import annotations

import pytest

from kcode.errors import ModelUnavailable, StreamTruncated, TransientModelError, UsageError
from kcode.llm import StepEnd, TextChunk, ToolSpec, create_model
from kcode.llm.chaos import FAULTS, ChaosModel
from kcode.agent.notes import compaction_note
from kcode.llm.scripted import ScriptedModel

from tests.conftest import write_script


TOOLS = [ToolSpec("bash", "run a command", {"type": "object"})]


def collect(model, messages=()):
    chunks = list(model.stream(list(messages) or [{"role": "user", "content": "hi"}], TOOLS))
    end = chunks[-1]
    assert isinstance(end, StepEnd)
    return chunks, end


def test_scripted_streams_turns_in_order_then_fails_clearly(tmp_path):
    path = write_script(tmp_path / "s.json", [
        {"content": "hello world, this is a longer message", "reasoning": "think", "tool_calls": [{"name": "bash", "arguments": {"command": "ls"}}]},
        {"content": "second"},
    ])
    model = create_model(f"scripted:{path}")
    chunks, end = collect(model)
    assert "".join(c.text for c in chunks if isinstance(c, TextChunk)) == end.content
    assert len([c for c in chunks if isinstance(c, TextChunk)]) > 1  # really streamed
    assert end.reasoning == "think" and end.tool_calls[0].arguments == {"command": "ls"}
    assert end.usage.input_tokens > 0 and end.usage.output_tokens > 0
    assert collect(model)[1].content == "second"
    with pytest.raises(ModelUnavailable, match="no turns left"):
        collect(model)


def test_scripted_position_is_state(tmp_path):
    path = write_script(tmp_path / "s.json", [{"content": "a"}, {"content": "b"}, {"content": "c"}])
    first = ScriptedModel.from_file(path)
    collect(first)
    state = first.state()
    resumed = ScriptedModel.from_file(path)
    resumed.restore(state)
    assert collect(resumed)[1].content == "b"


def test_scripted_raw_string_arguments_become_format_errors(tmp_path):
    path = write_script(tmp_path / "s.json", [{"tool_calls": [{"name": "bash", "arguments": '{"command": "ls"'}]}])
    end = collect(ScriptedModel.from_file(path))[1]
    assert end.tool_calls[0].error and "not valid JSON" in end.tool_calls[0].error
    assert end.tool_calls[0].arguments == {}


def test_bad_specs_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        create_model(f"scripted:{tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        create_model(f"scripted:{tmp_path / 'bad.json'}")
    with pytest.raises(UsageError, match="invalid rate"):
        create_model(f"chaos:lots:scripted:{tmp_path / 'bad.json'}")


def test_chaos_injects_every_fault_and_never_loses_a_turn(tmp_path):
    turns = [{"content": f"turn {i}", "tool_calls": [{"name": "bash", "arguments": {"command": f"echo {i}"}}]} for i in range(60)]
    path = write_script(tmp_path / "s.json", turns)
    model = ChaosModel(ScriptedModel.from_file(path), 0.5, seed=7)
    delivered = []
    while len(delivered) < 60:
        try:
            end = collect(model)[1]
        except TransientModelError as error:
            assert isinstance(error.retry_after, float)
            continue
        call = end.tool_calls[0]
        if call.error:  # malformed: the same turn comes again
            continue
        delivered.append(end.content)
    assert delivered == [f"turn {i}" for i in range(60)]
    assert all(model.injected[f] > 0 for f in FAULTS), model.injected


def test_chaos_truncation_raises_after_partial_stream(tmp_path):
    path = write_script(tmp_path / "s.json", [{"content": "x" * 200}])
    model = ChaosModel(ScriptedModel.from_file(path), 1.0, seed=1)
    model._random.choice = lambda faults: "truncated"
    stream = model.stream([{"role": "user", "content": "hi"}], TOOLS)
    first = next(stream)
    assert isinstance(first, TextChunk)
    with pytest.raises(StreamTruncated):
        list(stream)
    assert model.state() == {"position": 0}


def test_a_request_without_tools_is_a_summary_and_consumes_no_turn(tmp_path):
    path = write_script(tmp_path / "s.json", [{"content": "first"}])
    model = ScriptedModel.from_file(path)
    transcript = "Transcript:\nTOOL CALL read_file({})\nTOOL CALL bash({\"command\": \"ls\"})"
    summary_request = [{"role": "system", "content": compaction_note("instructions")}, {"role": "user", "content": transcript}]
    end = list(model.stream(summary_request, []))[-1]
    assert "2 tool calls" in end.content and 'bash({"command": "ls"})' in end.content
    assert model.position == 0 and collect(model)[1].content == "first"


def test_another_request_without_tools_takes_the_scripts_next_turn(tmp_path):
    """The repair phase's rewrite requests have no tools either: the script answers them."""
    model = ScriptedModel.from_file(write_script(tmp_path / "s.json", [{"content": "```python\ndef f():\n    pass\n```"}]))
    end = list(model.stream([{"role": "system", "content": "You fix bugs in code."}, {"role": "user", "content": "fix f"}], []))[-1]
    assert end.content.startswith("```python") and model.position == 1


def test_an_infill_turn_answers_a_fill_and_other_turns_are_left_for_the_steps():
    model = ScriptedModel([{"infill": "return a + b\nmore"}, {"content": "done"}])
    text, usage = model.infill("def add(a, b):\n    ", "\n")
    assert text == "return a + b" and usage.output_tokens > 0 and model.position == 1
    assert model.infill("x", "y") is None and model.position == 1  # the next turn is a step's
    assert list(model.stream([{"role": "user", "content": "go"}], []))[-1].content == "done"
