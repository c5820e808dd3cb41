"""The llama.cpp backend on the real Qwen2.5-Coder-0.5B-Instruct model (slow)."""

from __future__ import annotations

import pytest

from kcode.config import LlamaCppOptions
from kcode.llm import ModelOptions, StepEnd, TextChunk, ToolSpec, create_model

pytestmark = pytest.mark.slow

READ = ToolSpec("read_file", "Read a file of the repository and return its text.", {
    "type": "object", "properties": {"path": {"type": "string", "description": "relative path"}},
    "required": ["path"]})
SYSTEM = {"role": "system", "content": "You are a coding agent. Call tools to inspect the repository."}


@pytest.fixture(scope="module")
def qwen(qwen_0_5b):
    model = create_model(str(qwen_0_5b), ModelOptions(temperature=0.0, max_output_tokens=96, llamacpp=LlamaCppOptions(ctx=4096)))
    yield model
    model.close()


def step(model, messages, tools):
    chunks = list(model.stream(messages, tools))
    assert isinstance(chunks[-1], StepEnd)
    return chunks, chunks[-1]


def test_template_from_the_gguf_declares_the_tools(qwen):
    prompt = qwen._template.render([SYSTEM, {"role": "user", "content": "hi"}], [READ])
    assert "<tools>" in prompt and '"name": "read_file"' in prompt
    assert prompt.endswith("<|im_start|>assistant\n") and qwen._template.tool_call_format == "hermes"
    assert qwen.context_window == 4096


def test_a_real_step_yields_a_parsed_read_file_call(qwen):
    chunks, end = step(qwen, [SYSTEM, {"role": "user", "content": "Read the file main.py."}], [READ])
    assert [(c.name, c.arguments, c.error) for c in end.tool_calls] == [("read_file", {"path": "main.py"}, None)]
    streamed = "".join(c.text for c in chunks if isinstance(c, TextChunk))
    assert '"arguments"' not in streamed and '"arguments"' not in end.content
    assert end.finish_reason == "tool_calls"


def test_plain_answers_are_reused_token_for_token(qwen):
    messages = [{"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": "What is the capital of France?"}]
    _, first = step(qwen, messages, [])
    assert "Paris" in first.content
    messages += [{"role": "assistant", "content": first.content, "reasoning": ""},
                 {"role": "user", "content": "And of Italy?"}]
    _, second = step(qwen, messages, [])
    # the first prompt and every generated token stay in the context
    assert second.usage.cached_input_tokens >= first.usage.input_tokens + first.usage.output_tokens - 1
    assert second.usage.input_tokens <= 20


def test_the_grammar_checked_last_picks_what_the_grammar_on_every_token_picks(qwen_0_5b):
    """kcode samples free and checks the token against the tool-call grammar, resampling under
    the grammar only when it is rejected; under greedy sampling that must give exactly the
    tokens of llama-cpp-python's order (the grammar applied to the whole vocabulary first).
    Each order gets a fresh model, so both prefills run the same batches."""
    from kcode.tools import default_tools

    tools = default_tools().specs()
    messages = [SYSTEM, {"role": "user", "content": "Explain in two paragraphs what a linked list is."}]
    outputs = []
    for grammar_first in (False, True):
        model = create_model(str(qwen_0_5b), ModelOptions(temperature=0.0, max_output_tokens=64, llamacpp=LlamaCppOptions(ctx=4096, prefix_cache="off")))
        try:
            model.require_tool_call, model._grammar_first = True, grammar_first
            chunks, end = step(model, messages, tools)
            opener = model.vocabulary.tokenize("<tool_call>")
            generated = model._last_turn[1][len(model._last_prompt[1]):]
        finally:
            model.close()
        outputs.append((end.content, [(c.name, c.arguments) for c in end.tool_calls], end.usage.output_tokens))
        assert end.content == "" and not any(isinstance(c, TextChunk) for c in chunks)
        assert end.tool_calls and end.tool_calls[0].name in {t.name for t in tools}
        # the step opens with the opener's one special token, not "<", "tool", "_call", ">"
        assert len(opener) == 1 and generated[0] == opener[0]
    assert outputs[0] == outputs[1]


def test_fill_in_the_middle_writes_one_line_and_reuses_the_file_before_it(qwen):
    assert qwen.fim_tokens is not None  # Qwen2.5-Coder's <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>
    prefix = 'def add(a, b):\n    """Return the sum of a and b."""\n    '
    suffix = "\n\n\nassert add(2, 3) == 5\n"
    text, usage = qwen.infill(prefix, suffix, temperature=0.0)
    assert "\n" not in text and text.startswith("return") and "+" in text
    again, second = qwen.infill(prefix, suffix, temperature=0.0)
    assert again == text
    assert second.cached_input_tokens == usage.input_tokens - 1 and second.input_tokens == 1  # all but the last prompt token held
    # a block: up to the end of its third line, or where the model ends it
    block, _ = qwen.infill('def mean(values):\n    ', "\n\n\nassert mean([1, 3]) == 2\n", temperature=0.0, lines=3)
    assert block.count("\n") <= 2 and not block.endswith("\n") and block.strip()
    # the conversation bookkeeping is intact: a chat step after the fills answers as before
    _, end = step(qwen, [{"role": "system", "content": "Answer in one short sentence."},
                         {"role": "user", "content": "What is the capital of France?"}], [])
    assert "Paris" in end.content
