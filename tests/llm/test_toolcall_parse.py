"""Tool-call parsing on recorded model outputs: every format, broken and truncated ones too."""

from __future__ import annotations

import pytest

from kcode.llm.base import ToolSpec
from kcode.llm.llamacpp._streaming import OutputSplitter
from kcode.llm.toolcall_parse import parse_output, split_reasoning

READ = ToolSpec("read_file", "Read a file", {
    "type": "object",
    "properties": {"path": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["path"],
    "additionalProperties": False,
})
BASH = ToolSpec("bash", "Run a command", {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"],
})
TOOLS = [READ, BASH]

# Recorded outputs (Kimi K2 instruct through llama.cpp with special tokens kept; Qwen2.5-Coder
# 0.5B/1.5B Q4_K_M; hand-truncated copies of them).
KIMI_TWO_CALLS = (
    "I'll look at the file first.<|tool_calls_section_begin|><|tool_call_begin|>functions.read_file:0"
    '<|tool_call_argument_begin|>{"path": "src/calc.py"}<|tool_call_end|><|tool_call_begin|>'
    'functions.bash:1<|tool_call_argument_begin|>{"command": "pytest -q"}<|tool_call_end|>'
    "<|tool_calls_section_end|>"
)
QWEN_HERMES = '<tool_call>\n{"name": "read_file", "arguments": {"path": "calc.py"}}\n</tool_call>'
QWEN_FENCED = (
    "To read the file, I'll call the tool:\n```json\n{\n  \"name\": \"read_file\",\n"
    "  \"arguments\": {\n    \"path\": \"main.py\"\n  }\n}\n```"
)


def calls_of(text, tools=TOOLS):
    parsed = parse_output(text, tools)
    return parsed, [(c.name, c.arguments, c.error) for c in parsed.tool_calls]


def test_kimi_section_two_calls_keep_their_ids_and_leave_clean_content():
    parsed, calls = calls_of(KIMI_TWO_CALLS)
    assert calls == [("read_file", {"path": "src/calc.py"}, None), ("bash", {"command": "pytest -q"}, None)]
    assert [c.id for c in parsed.tool_calls] == ["functions.read_file:0", "functions.bash:1"]
    assert parsed.content == "I'll look at the file first."
    assert parsed.tool_calls[0].raw == '{"path": "src/calc.py"}'


def test_kimi_with_reasoning_and_truncated_inside_arguments():
    text = "<think>The user wants tests run.</think>Running.<|tool_calls_section_begin|>" \
           '<|tool_call_begin|>functions.bash:3<|tool_call_argument_begin|>{"command": "pyt'
    parsed, calls = calls_of(text)
    assert parsed.reasoning == "The user wants tests run." and parsed.content == "Running."
    assert len(calls) == 1 and calls[0][0] == "bash" and calls[0][1] == {}
    assert "cut off" in calls[0][2]


def test_kimi_truncated_after_complete_arguments_is_accepted():
    text = '<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0<|tool_call_argument_begin|>{"command": "ls"}'
    _, calls = calls_of(text)
    assert calls == [("bash", {"command": "ls"}, None)]


@pytest.mark.parametrize("text, fragment", [
    ("<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0", "has no <|tool_call_argument_begin|>"),
    ("<|tool_calls_section_begin|><|tool_call_begin|>call bash please<|tool_call_argument_begin|>{}<|tool_call_end|>",
     "cannot read the tool name"),
    ("<|tool_calls_section_begin|>nothing here<|tool_calls_section_end|>", "holds no"),
    ("<|tool_calls_section_begin|><|tool_call_begin|>functions.write_file:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
     "unknown tool 'write_file'"),
    ("<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0<|tool_call_argument_begin|>[1, 2]<|tool_call_end|>",
     "must be a JSON object"),
    ("<|tool_calls_section_begin|><|tool_call_begin|>functions.bash:0<|tool_call_argument_begin|><|tool_call_end|>",
     "empty"),
])
def test_kimi_broken_outputs_become_errors(text, fragment):
    _, calls = calls_of(text)
    assert len(calls) == 1 and calls[0][1] == {} and fragment in calls[0][2]


def test_hermes_call_and_schema_errors():
    parsed, calls = calls_of("Let me check." + QWEN_HERMES)
    assert calls == [("read_file", {"path": "calc.py"}, None)] and parsed.content == "Let me check."
    _, calls = calls_of('<tool_call>\n{"name": "read_file", "arguments": {"file": "x", "limit": 0}}\n</tool_call>')
    error = calls[0][2]
    assert "'path' is a required property" in error and "limit" in error


def test_hermes_arguments_as_a_json_string_and_several_calls():
    text = ('<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>\n'
            '<tool_call>{"name": "read_file", "arguments": {"path": "a"}}</tool_call>')
    parsed, calls = calls_of(text)
    assert calls == [("bash", {"command": "ls"}, None), ("read_file", {"path": "a"}, None)]
    assert len({c.id for c in parsed.tool_calls}) == 2 and parsed.content == ""


@pytest.mark.parametrize("text, fragment", [
    ('<tool_call>\n{"name": "read_file", "argum', "cut off before </tool_call>"),
    ('<tool_call>{"name": "read_file", "arguments": {"path": "a"}</tool_call>', "not valid JSON"),
    ("<tool_call>[]</tool_call>", None),
    ('<tool_call>{"arguments": {}}</tool_call>', 'no "name"'),
    ('<tool_call>{"name": "bash", "arguments": 5}</tool_call>', "must be a JSON object"),
])
def test_hermes_broken_outputs_never_crash(text, fragment):
    parsed, calls = calls_of(text)
    assert "<tool_call>" not in parsed.content
    if fragment is None:
        assert calls == []
    else:
        assert calls and fragment in calls[0][2]


def test_fenced_json_the_way_small_qwen_models_answer():
    parsed, calls = calls_of(QWEN_FENCED)
    assert calls == [("read_file", {"path": "main.py"}, None)]
    assert parsed.content == "To read the file, I'll call the tool:"
    assert "```" not in parsed.content


def test_fenced_truncated_and_ordinary_code_blocks():
    _, calls = calls_of('```json\n{"name": "read_file", "arguments": {"path": "a')
    assert calls[0][0] == "read_file" and "cut off" in calls[0][2]
    parsed, calls = calls_of("Here:\n```python\nprint({'name': 1})\n```")
    assert calls == [] and "```python" in parsed.content


def test_bare_json_calls_and_prose_with_braces():
    parsed, calls = calls_of('I will run {"name": "bash", "arguments": {"command": "ls -la"}} now.')
    assert calls == [("bash", {"command": "ls -la"}, None)] and parsed.content == "I will run  now."
    parsed, calls = calls_of('A dict like {"a": 1} or {"name": "x"} is just prose.')
    assert calls == [] and parsed.content.startswith("A dict like")
    _, calls = calls_of('{"name": "bash", "arguments": {"command": "l')
    assert calls[0][0] == "bash" and "not valid JSON" in calls[0][2]


def test_openai_shaped_object_and_unknown_tool_lists_the_real_ones():
    _, calls = calls_of('```json\n{"function": {"name": "bash", "arguments": {"command": "ls"}}}\n```')
    assert calls == [("bash", {"command": "ls"}, None)]
    _, calls = calls_of('<tool_call>{"name": "python", "arguments": {}}</tool_call>')
    assert "available tools: bash, read_file" in calls[0][2]


def test_plain_text_and_reasoning_forms():
    assert calls_of("Done, all tests pass.")[1] == []
    assert split_reasoning("<think>a</think>b") == ("a", "b")
    assert split_reasoning("a</think>b") == ("a", "b")  # the template opened <think>
    assert split_reasoning("<think>cut off while thinking") == ("cut off while thinking", "")
    assert split_reasoning("no reasoning") == ("", "no reasoning")


def _split(text, step, **kwargs):
    splitter = OutputSplitter(**kwargs)
    pairs = []
    for start in range(0, len(text), step):
        pairs += splitter.feed(text[start:start + step])
    pairs += splitter.finish()
    merged: dict[str, str] = {}
    for kind, delta in pairs:
        merged[kind] = merged.get(kind, "") + delta
    return merged, splitter.tool_opener


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_streamed_text_never_contains_markup_whatever_the_chunking(step):
    merged, opener = _split("<think>plan</think>" + KIMI_TWO_CALLS, step)
    assert merged == {"reasoning": "plan", "text": "I'll look at the file first."}
    assert opener == "<|tool_calls_section_begin|>"
    merged, opener = _split(QWEN_FENCED + "\nthen more", step)
    assert merged["text"] == "To read the file, I'll call the tool:\n\nthen more" and opener is None
    merged, _ = _split("Use ```python\nx = 1\n``` and a < b <| c", step)
    assert merged["text"] == "Use ```python\nx = 1\n``` and a < b <| c"
    merged, opener = _split("ok " + QWEN_HERMES, step)
    assert merged["text"] == "ok " and opener == "<tool_call>"


def test_code_blocks_stream_before_they_close():
    splitter = OutputSplitter()
    shown = ""
    for piece in ["Here:\n", "```", "python\n", "def f():\n", "    return 1\n"]:
        shown += "".join(text for _, text in splitter.feed(piece))
    assert shown.startswith("Here:\n```python\ndef f():")  # streamed while still open
    shown += "".join(text for _, text in splitter.feed("```\nDone."))
    shown += "".join(text for _, text in splitter.finish())
    assert shown == "Here:\n```python\ndef f():\n    return 1\n```\nDone."
    splitter = OutputSplitter()
    shown = "".join(text for _, text in splitter.feed('```json\n{"name": "bash", "argu'))
    assert shown == ""  # a JSON call in the making is held back
    splitter = OutputSplitter()
    shown = "".join(text for _, text in splitter.feed('```json\n{"a": [1, 2, 3], "b": "some data"}'))
    assert shown.startswith('```json\n{"a"')  # JSON that is not a call is shown


def test_null_for_an_optional_argument_means_left_out():
    from kcode.llm.base import ToolCall, ToolSpec
    from kcode.llm.toolcall_parse import validate_call

    spec = ToolSpec("run_tests", "d", {"type": "object", "properties": {"command": {"type": "string"}}, "additionalProperties": False})
    call = validate_call(ToolCall("c1", "run_tests", {"command": None}), [spec])
    assert call.error is None and call.arguments == {}
    required = ToolSpec("read_file", "d", {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    assert validate_call(ToolCall("c2", "read_file", {"path": None}), [required]).error
