"""The llama.cpp backend end to end on tiny random-weight models: template rendering, token
bookkeeping, prefix reuse, grammar-constrained tool calls, errors (the prefix cache:
test_prefix_cache.py)."""

from __future__ import annotations

import pytest

from kcode.cancel import CancelToken
from kcode.config import LlamaCppOptions
from kcode.errors import ConfigError, Interrupted, ModelUnavailable
from kcode.llm import ModelOptions, ReasoningChunk, StepEnd, TextChunk, ToolSpec, create_model
from kcode.llm.gguf import GgufInfo
from kcode.llm.llamacpp import LlamaCppModel, Sampling
from kcode.llm.llamacpp._grammar import tool_call_grammar
from kcode.llm.llamacpp._loader import choose_context
from kcode.llm.toolcall_parse import KIMI_SECTION_BEGIN, parse_output

llama_cpp = pytest.importorskip("llama_cpp")

TOOLS = [
    ToolSpec("read_file", "Read a file", {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
    ToolSpec("bash", "Run a command", {
        "type": "object", "properties": {"command": {"type": "string"}, "timeout": {"type": "integer"}},
        "required": ["command"]}),
]
SYSTEM = {"role": "system", "content": "You are kcode. " + "Repository map: calc.py add mul. " * 8}
USER = {"role": "user", "content": "Fix the failing test."}


def run_step(model, messages, tools=TOOLS, cancel=None):
    chunks = list(model.stream(messages, tools, cancel=cancel))
    end = chunks[-1]
    assert isinstance(end, StepEnd) and not any(isinstance(c, StepEnd) for c in chunks[:-1])
    return chunks, end


@pytest.fixture
def model(tiny_llama_moe):
    model = create_model(str(tiny_llama_moe), ModelOptions(temperature=0.0, max_output_tokens=8, llamacpp=LlamaCppOptions(ctx=2048)))
    yield model
    model.close()


def test_renders_the_gguf_template_with_tools_calls_and_results(model):
    messages = [SYSTEM, USER,
                {"role": "assistant", "content": "Reading.", "reasoning": "",
                 "tool_calls": [{"id": "functions.read_file:0", "name": "read_file", "arguments": {"path": "calc.py"}}]},
                {"role": "tool", "tool_call_id": "functions.read_file:0", "name": "read_file", "content": "def add(): ..."}]
    prompt = model._template.render(messages, TOOLS)
    assert prompt.startswith('<|im_system|>tool_declare<|im_middle|>[{"type": "function"')
    assert ('<|im_assistant|>assistant<|im_middle|>Reading.<|tool_calls_section_begin|><|tool_call_begin|>'
            'functions.read_file:0<|tool_call_argument_begin|>{"path": "calc.py"}<|tool_call_end|>'
            '<|tool_calls_section_end|><|im_end|>') in prompt
    assert "## Return of functions.read_file:0\ndef add(): ..." in prompt
    assert prompt.endswith("<|im_assistant|>assistant<|im_middle|>")
    # markers are single control tokens, and decoding keeps them
    ids = model.vocabulary.tokenize("<|tool_call_begin|>functions")
    assert len(ids) < len("<|tool_call_begin|>") and model.vocabulary.detokenize(ids) == "<|tool_call_begin|>functions"


def test_a_step_streams_then_ends_with_usage(model):
    chunks, end = run_step(model, [SYSTEM, USER])
    prompt_tokens = model.count_tokens(model._template.render([SYSTEM, USER], TOOLS))
    assert end.usage.input_tokens == prompt_tokens and end.usage.cached_input_tokens == 0
    assert 1 <= end.usage.output_tokens <= 8
    streamed = "".join(c.text for c in chunks if isinstance(c, TextChunk | ReasoningChunk))
    assert "<|" not in streamed
    assert model.context_window == 2048


def test_second_step_evaluates_only_the_new_tokens(model):
    _, first = run_step(model, [SYSTEM, USER])
    turn = {"role": "assistant", "content": first.content, "reasoning": first.reasoning, "tool_calls": []}
    follow_up = {"role": "user", "content": "Now run the tests, please."}
    before = model._template.render([SYSTEM, USER], TOOLS)
    after = model._template.render([SYSTEM, USER, turn, follow_up], TOOLS)
    _, second = run_step(model, [SYSTEM, USER, turn, follow_up])
    assert second.usage.cached_input_tokens >= first.usage.input_tokens
    new_tokens = model.count_tokens(after) - model.count_tokens(before)
    assert second.usage.input_tokens <= new_tokens + 1
    assert second.usage.input_tokens + second.usage.cached_input_tokens == len(model._last_prompt[1])


def test_generated_ids_are_kept_when_the_template_reproduces_them(model):
    """When the next prompt extends prompt + generated text, nothing is re-evaluated
    except the unevaluated last token and the new suffix."""
    messages = [SYSTEM, USER]
    run_step(model, messages)
    prompt_text, _ = model._last_prompt
    turn_text, turn_tokens = model._last_turn
    suffix = "<|im_end|><|im_user|>user<|im_middle|>go on<|im_end|>"
    tokens = model._prompt_tokens(turn_text + suffix, messages, TOOLS)
    assert tokens[: len(turn_tokens)] == turn_tokens  # generated ids reused verbatim
    assert tokens[len(turn_tokens):] == model.vocabulary.tokenize(suffix)


SHORT_TOOLS = [  # bounded strings, so that random weights finish a call within the budget
    ToolSpec("read_file", "Read a file", {
        "type": "object", "properties": {"path": {"type": "string", "maxLength": 6}}, "required": ["path"]}),
    ToolSpec("bash", "Run a command", {
        "type": "object", "properties": {"command": {"type": "string", "maxLength": 6}}, "required": ["command"]}),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grammar_forces_valid_kimi_calls_even_from_random_weights(tiny_deepseek2, seed):
    model = LlamaCppModel(tiny_deepseek2, LlamaCppOptions(ctx=2048, prefix_cache="off"), sampling=Sampling(seed=seed))
    prompt = model._template.render([SYSTEM, USER], SHORT_TOOLS) + KIMI_SECTION_BEGIN
    grammar = llama_cpp.LlamaGrammar.from_string(tool_call_grammar(SHORT_TOOLS, KIMI_SECTION_BEGIN), verbose=False)
    out = []
    tokens = model.vocabulary.tokenize(prompt, first=True)
    for token in model._llm.generate(tokens, grammar=grammar, temp=1.0, top_k=0, top_p=1.0, min_p=0.0):
        if model.vocabulary.is_end_of_turn(token) or len(out) > 400:
            break
        out.append(token)
    text = model.vocabulary.detokenize(out)
    # checked against the unbounded schemas: the grammar counts a "<x" pair as one character
    parsed = parse_output(KIMI_SECTION_BEGIN + text, TOOLS)
    assert text.endswith("<|tool_calls_section_end|>"), text
    assert parsed.tool_calls and all(c.error is None for c in parsed.tool_calls), parsed.tool_calls
    assert not any(ord(ch) < 0x20 for c in parsed.tool_calls for ch in c.raw)
    assert not any("<|" in str(value) for c in parsed.tool_calls for value in c.arguments.values())
    model.close()


def test_constrain_tools_switches_to_the_grammar_after_the_opener(tiny_deepseek2):
    """Random weights emit a Kimi opener at some point; after it, every call must parse."""
    options = ModelOptions(temperature=1.0, seed=7, max_output_tokens=600, llamacpp=LlamaCppOptions(ctx=2048, constrain_tools=True))
    model = create_model(str(tiny_deepseek2), options)
    found = False
    for attempt in range(6):
        chunks, end = run_step(model, [SYSTEM, {"role": "user", "content": f"Attempt {attempt}."}], SHORT_TOOLS)
        if end.tool_calls:
            found = True
            for call in end.tool_calls:  # envelope and JSON always complete (maxLength is approximate)
                assert call.name in ("read_file", "bash") and call.arguments, call
                assert call.error is None or "is too long" in call.error, call
            assert end.finish_reason == "tool_calls"
            assert "<|tool_call_begin|>" not in "".join(c.text for c in chunks if isinstance(c, TextChunk))
    model.close()
    if not found:
        pytest.skip("the random model never opened a tool call with this seed")


def test_cancel_stops_the_step(model):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Interrupted):
        run_step(model, [SYSTEM, USER], cancel=cancel)


def test_missing_or_broken_files_are_model_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable, match="no such model file"):
        create_model(str(tmp_path / "absent.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelUnavailable):
        create_model(str(junk))


def test_context_defaults_to_trained_and_is_lowered_to_fit_memory(tiny_llama_moe):
    info = GgufInfo(tiny_llama_moe, 10 * 2**30, "llama", {
        "llama.block_count": 32, "llama.context_length": 131072, "llama.embedding_length": 4096,
        "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8})
    per_token = 32 * 8 * (128 + 128) * 2  # 128 KiB per token at f16
    assert choose_context(info, LlamaCppOptions(), 200 * 2**30, on_gpu=False) == (131072, None)
    ctx, notice = choose_context(info, LlamaCppOptions(), 16 * 2**30, on_gpu=False)
    assert ctx * per_token <= 16 * 2**30 * 0.9 - 10 * 2**30 < 2 * ctx * per_token
    assert notice and "lowered from the model's 131072 tokens" in notice and "--ctx" in notice
    assert choose_context(info, LlamaCppOptions(ctx=100000), 16 * 2**30, on_gpu=False) == (100000, None)
    assert choose_context(info, LlamaCppOptions(kv_type="q8_0"), 16 * 2**30, on_gpu=False)[0] == 2 * ctx


def test_a_required_tool_call_is_constrained_from_the_first_token(tiny_llama_moe):
    options = ModelOptions(temperature=1.0, seed=3, max_output_tokens=300, llamacpp=LlamaCppOptions(ctx=2048))  # constrain_tools off: require_tool_call alone
    model = create_model(str(tiny_llama_moe), options)
    model.require_tool_call = True
    for attempt in range(3):
        chunks, end = run_step(model, [SYSTEM, {"role": "user", "content": f"Attempt {attempt}."}], SHORT_TOOLS)
        # exactly one call: random weights would otherwise chain calls until the output cap
        assert end.content == "" and len(end.tool_calls) == 1 and end.finish_reason == "tool_calls", end
        call = end.tool_calls[0]
        assert call.name in ("read_file", "bash") and call.arguments, call
        assert call.error is None or "is too long" in call.error, call  # maxLength is approximate
        assert not any(isinstance(c, TextChunk) for c in chunks)
    model.close()


def test_by_default_every_step_calls_a_tool_and_withheld_tools_are_left_out_of_the_grammar(tiny_llama_moe):
    """Without thinking, tool_calls defaults to "required": each step opens with a tool call,
    no prose. ``withheld_tools`` (the loop leaves finish out before the model has looked)
    shapes the grammar only: the calls use the other tools, and the prompt is unchanged."""
    options = ModelOptions(temperature=1.0, seed=5, max_output_tokens=300, llamacpp=LlamaCppOptions(ctx=2048, constrain_tools=False))
    model = create_model(str(tiny_llama_moe), options)
    assert not model.require_tool_call  # the default does it, not the loop's flag
    model.withheld_tools = frozenset({"bash"})
    names = set()
    for attempt in range(3):
        chunks, end = run_step(model, [SYSTEM, {"role": "user", "content": f"Attempt {attempt}."}], SHORT_TOOLS)
        assert end.content == "" and len(end.tool_calls) == 1 and end.finish_reason == "tool_calls", end
        names |= {call.name for call in end.tool_calls}
        assert not any(isinstance(c, TextChunk) for c in chunks)
    assert names == {"read_file"}, names
    model.close()
    free = create_model(str(tiny_llama_moe), ModelOptions(temperature=1.0, seed=5, max_output_tokens=40,
                                                          llamacpp=LlamaCppOptions(ctx=2048, constrain_tools=False, tool_calls="auto")))
    ends = [run_step(free, [SYSTEM, {"role": "user", "content": f"Attempt {n}."}], SHORT_TOOLS)[1] for n in range(2)]
    free.close()
    assert any(end.content for end in ends)  # random weights write text when they may
    with pytest.raises(ConfigError, match="tool_calls must be 'auto' or 'required'"):
        create_model(str(tiny_llama_moe), ModelOptions(llamacpp=LlamaCppOptions(ctx=2048, tool_calls="always")))


def test_a_new_turn_marker_ends_the_step(model):
    user_turn = model._llm.tokenize(b"<|im_user|>", add_bos=False, special=True)
    assert len(user_turn) == 1 and model.vocabulary.is_end_of_turn(user_turn[0])
    middle = model._llm.tokenize(b"<|im_middle|>", add_bos=False, special=True)
    assert not model.vocabulary.is_end_of_turn(middle[0])


def test_a_local_model_caps_each_step_at_2048_tokens_by_default_and_the_cap_ends_the_step(tiny_llama_moe):
    from kcode.llm.llamacpp import DEFAULT_MAX_OUTPUT_TOKENS

    default = create_model(str(tiny_llama_moe), ModelOptions(llamacpp=LlamaCppOptions(ctx=2048)))
    assert DEFAULT_MAX_OUTPUT_TOKENS == 2048 and default._max_output_tokens == 2048
    default.close()
    capped = create_model(str(tiny_llama_moe), ModelOptions(temperature=1.0, seed=1, max_output_tokens=5, llamacpp=LlamaCppOptions(ctx=2048, constrain_tools=False)))
    ends = [run_step(capped, [SYSTEM, {"role": "user", "content": f"Attempt {n}."}])[1] for n in range(4)]
    capped.close()
    assert all(end.usage.output_tokens <= 5 for end in ends)
    assert any(end.finish_reason == "length" and end.usage.output_tokens == 5 for end in ends)


def test_a_model_without_fill_in_the_middle_tokens_says_so(model):
    assert model.fim_tokens is None
    assert model.infill("def add(a, b):\n    ", "\n") is None
