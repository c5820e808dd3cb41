"""The prefix cache on tiny random-weight models: layered entries (fixed part, whole head),
the longest token prefix restored, llama.cpp's own counters showing that only the rest is
evaluated, entries of other models or settings never used, the size bound."""

from __future__ import annotations

import json

import pytest

from kcode.config import LlamaCppOptions
from kcode.llm import StepEnd, ToolSpec
from kcode.llm.llamacpp._model import LlamaCppModel, Sampling, decode_counters
from kcode.llm.llamacpp._prefix_cache import PrefixStore, _common_prefix

llama_cpp = pytest.importorskip("llama_cpp")

TOOLS = [
    ToolSpec("read_file", "Read a file", {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
]
FIXED = {"role": "system", "content": "You are kcode. Work in the repository, test, then finish. " * 3}
REPO = {"role": "system", "content": "# Repository `calc`\n" + "".join(
    f"calc/mod_{n}.py: def add_{n}(a, b) returns the sum of a and b\n" for n in range(12))}
OTHER_REPO = {"role": "system", "content": "# Repository `strings`\n" + "upper lower title strip\n" * 10}


def task(text: str) -> dict:
    return {"role": "user", "content": text}


def new_model(path, cache, on_notice=None, **placement) -> LlamaCppModel:
    return LlamaCppModel(path, LlamaCppOptions(ctx=2048, prefix_cache=str(cache), tool_calls="auto", **placement),
                         sampling=Sampling(0.0, seed=1), max_output_tokens=1, on_notice=on_notice)


def decoded(model: LlamaCppModel) -> int:
    """Tokens llama.cpp decoded in this context so far (its own counters)."""
    return decode_counters(model._llm)[0]


def step(model: LlamaCppModel, messages: list[dict]) -> tuple[StepEnd, int, list[int]]:
    """Run one step; (its end, tokens llama.cpp decoded for it, the prompt's token ids)."""
    before = decoded(model)
    end = list(model.stream(messages, TOOLS))[-1]
    assert isinstance(end, StepEnd)
    return end, decoded(model) - before, model._last_prompt[1]


def held(model: LlamaCppModel) -> list[int]:
    return [int(t) for t in model._llm.input_ids[: model._llm.n_tokens]]


def test_a_second_run_evaluates_only_what_the_cache_lacks(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    cold = new_model(tiny_llama_moe, cache)
    cold_end, cold_decoded, cold_prompt = step(cold, [FIXED, REPO, task("Fix add_3.")])
    saved = held(cold)
    cold.close()
    assert cold_decoded == len(cold_prompt)  # everything evaluated once
    entries = PrefixStore(cache).entries()
    assert sorted(e.label for e in entries) == ["", "(fixed prompt)"]  # the fixed part, the whole head
    fixed_end = next(e.n_tokens for e in entries if e.label == "(fixed prompt)")
    head_end = next(e.stable_tokens for e in entries if e.label == "")
    assert 0 < fixed_end < head_end < len(cold_prompt)

    warm = new_model(tiny_llama_moe, cache)
    _, warm_decoded, warm_prompt = step(warm, [FIXED, REPO, task("Now make mod_7 faster, please.")])
    restored = _common_prefix(saved, warm_prompt)
    assert restored >= head_end and warm.last_prefix_restored
    assert warm_decoded == len(warm_prompt) - restored  # only the new task was evaluated
    warm.close()

    again = new_model(tiny_llama_moe, cache)  # the very same prompt: same state, same output
    again_end, again_decoded, _ = step(again, [FIXED, REPO, task("Fix add_3.")])
    assert again_decoded == 1 and again_end.content == cold_end.content
    again.close()


def test_a_new_repository_restores_the_fixed_part(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    _write_entries(tiny_llama_moe, cache)
    before = PrefixStore(cache).entries()
    fixed = next(e for e in before if e.label == "(fixed prompt)")
    other = new_model(tiny_llama_moe, cache)
    _, evaluated, prompt = step(other, [FIXED, OTHER_REPO, task("Fix title.")])
    restored = max(_common_prefix(e.tokens(), prompt) for e in before)
    assert restored >= fixed.n_tokens == other._layers[0]
    assert evaluated == len(prompt) - restored  # the other repository's part and its task
    other.close()


def test_a_changed_repository_part_restores_up_to_the_first_change(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    first = new_model(tiny_llama_moe, cache)
    step(first, [FIXED, REPO, task("Fix add_3.")])
    saved = held(first)
    first.close()
    changed = {"role": "system", "content": REPO["content"].replace("def add_11(a, b)", "def add_11(a, b, c)")}
    after_commit = new_model(tiny_llama_moe, cache)
    _, evaluated, prompt = step(after_commit, [FIXED, changed, task("Fix add_3.")])
    restored = _common_prefix(saved, prompt)
    head_end = after_commit._layers[1]
    assert restored > 0.8 * head_end  # the change is near the end of the repository part
    assert evaluated == len(prompt) - restored
    after_commit.close()


def test_the_prepared_fixed_part_is_saved_once_and_then_reported_cached(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    model = new_model(tiny_llama_moe, cache)
    status = model.prepare_prefix([FIXED], TOOLS, label="/repo")
    assert not status.cached and status.evaluated_tokens == status.tokens > 0
    assert model.count_prompt_tokens([FIXED], TOOLS) == status.tokens
    # the first step finds the fixed part in the context and evaluates only the rest
    _, evaluated, prompt = step(model, [FIXED, REPO, task("Fix add_3.")])
    assert evaluated == len(prompt) - status.tokens
    fixed_end, head_end = model._layers
    model.close()
    again = new_model(tiny_llama_moe, cache)
    assert again.prepare_prefix([FIXED], TOOLS, label="/repo").cached
    assert again.cached_prefix("/repo") == {"tokens": head_end - fixed_end}  # the repository part
    assert again.cached_prefix("/elsewhere") is None
    again.note_prefix(stable_budget=800)  # kept with the entries it writes from now on
    step(again, [FIXED, {"role": "system", "content": REPO["content"] + "more\n"}, task("Fix add_3.")])
    assert again.cached_prefix("/repo")["stable_budget"] == 800
    again.close()


def _write_entries(model_path, cache):
    """One first step in a new conversation: the cache gets its fixed-part and head entries."""
    model = new_model(model_path, cache)
    step(model, [FIXED, REPO, task("Fix add_3.")])
    model.close()


def _assert_evaluates_everything(model):
    _, evaluated, prompt = step(model, [FIXED, REPO, task("Fix add_3.")])
    assert evaluated == len(prompt) and not model.last_prefix_restored
    model.close()


def test_entries_of_another_model_or_other_settings_are_never_used(tiny_llama_moe, tmp_path):
    from kcode.llm.models import write_tiny_llama_moe

    cache = tmp_path / "kv"
    _write_entries(tiny_llama_moe, cache)
    count = len(PrefixStore(cache).entries())

    # same file name and size, other weights
    (tmp_path / "twin").mkdir()
    twin = write_tiny_llama_moe(tmp_path / "twin" / tiny_llama_moe.name, seed=7)
    assert twin.stat().st_size == tiny_llama_moe.stat().st_size
    _assert_evaluates_everything(new_model(twin, cache))
    _assert_evaluates_everything(new_model(tiny_llama_moe, cache, flash_attn=False))  # the default is on
    assert len(PrefixStore(cache).entries()) == count + 4  # each wrote its own two entries


def test_a_broken_entry_is_skipped_and_the_prompt_evaluated(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    _write_entries(tiny_llama_moe, cache)
    for entry in PrefixStore(cache).entries():
        entry.state_path.write_bytes(b"not a state file")
    notices: list[str] = []
    model = new_model(tiny_llama_moe, cache, notices.append)
    end, evaluated, prompt = step(model, [FIXED, REPO, task("Fix add_3.")])
    assert evaluated == len(prompt) and end.usage.cached_input_tokens == 0
    assert notices and all("is unusable; evaluating the prompt instead" in text for text in notices)
    model.close()


def test_a_runs_model_notices_are_events_of_the_session(tmp_path, calc_repo, capfd):
    """What the model has to say reaches the run's subscribers (and its log) as an ``error``
    event of kind ``notice``; nothing is printed."""
    from kcode.agent.runner import run_task
    from kcode.config import Config
    from kcode.paths import cache_dir
    from kcode.llm.models import write_tiny_llama_moe

    path = write_tiny_llama_moe(tmp_path / "tiny.gguf", context_length=16384)  # the byte tokens of the whole prompt fit
    config = Config(model=str(path), max_steps=1, temperature=0.0, max_output_tokens=1, auto_test=False,
                    pack="none", llamacpp=LlamaCppOptions(ctx=16384))
    first = run_task("fix add", config, repo=calc_repo)  # writes the prefix cache's entries
    assert first.result.status != "error" and PrefixStore(cache_dir() / "prefix").entries()
    for entry in PrefixStore(cache_dir() / "prefix").entries():
        entry.state_path.write_bytes(b"not a state file")
    capfd.readouterr()
    events: list = []
    run_task("fix add", config, repo=calc_repo, subscribers=[events.append])
    notices = [e for e in events if e.type == "error" and e.kind == "notice"]
    assert notices and "is unusable; evaluating the prompt instead" in notices[0].message
    assert notices[0].recoverable
    assert capfd.readouterr() == ("", "")


def test_the_cache_keeps_within_its_size_by_dropping_the_least_recently_used(tiny_llama_moe, tmp_path):
    cache = tmp_path / "kv"
    _write_entries(tiny_llama_moe, cache)
    entries = PrefixStore(cache).entries()
    biggest = max(e.size for e in entries)
    store = PrefixStore(cache, limit_bytes=biggest)
    oldest = entries[-1]
    removed = store.evict()
    assert [e.key for e in removed] == [oldest.key] and len(store.entries()) == len(entries) - 1
    listed = json.loads(entries[0].meta_path.read_text())
    assert {"key", "model", "n_tokens", "size", "last_used", "label"} <= set(listed)
    assert len(store.clear()) == len(entries) - 1 and store.entries() == []


@pytest.mark.slow
def test_real_model_second_run_evaluates_only_the_new_task(qwen_0_5b, tmp_path):
    """The 0.5B Qwen model with kcode's own fixed prompt and tools: run 1 evaluates it all;
    run 2 (new process state, other task) evaluates only the task; a run in another
    repository evaluates only that repository's part and its task."""
    from kcode.agent.prompt import initial_messages, repository_prompt
    from kcode.tools import default_tools

    tools = default_tools().specs()
    pack = "".join(f"src/pkg/mod_{n}.py:\n    def function_{n}(value):\n" for n in range(30))
    here = repository_prompt(repo_name="pkg", repo_pack=pack)
    cache = tmp_path / "kv"

    def model():
        return LlamaCppModel(qwen_0_5b, LlamaCppOptions(ctx=4096, prefix_cache=str(cache), tool_calls="auto"),
                             sampling=Sampling(0.0, seed=1), max_output_tokens=1)

    def run(messages):
        current = model()
        _, evaluated, prompt = step_with(current, messages)
        layers, saved = current._layers, held(current)
        current.close()
        return evaluated, prompt, layers, saved

    def step_with(current, messages):
        before = decoded(current)
        end = list(current.stream(messages, tools))[-1]
        return end, decoded(current) - before, current._last_prompt[1]

    evaluated, prompt, (fixed_end, head_end), saved = run(initial_messages(here, "Fix function_3."))
    assert evaluated == len(prompt) and fixed_end > 1000 and head_end > fixed_end + 300
    evaluated, prompt, _, _ = run(initial_messages(here, "Rename function_12 to twelve."))
    assert evaluated == len(prompt) - _common_prefix(saved, prompt) < 40  # the new task only
    other = repository_prompt(repo_name="other", repo_pack=pack.replace("mod_", "module_"))
    before = PrefixStore(cache).entries()
    evaluated, prompt, (fixed_end, _), _ = run(initial_messages(other, "Fix function_3."))
    restored = max(_common_prefix(entry.tokens(), prompt) for entry in before)
    assert restored >= fixed_end and evaluated == len(prompt) - restored  # the fixed part came from the cache
