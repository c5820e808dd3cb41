from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kcode.agent.pack_budget import fixed_prompt_tokens
from kcode.agent.prompt import (
    AGENTS_MD_LIMIT,
    FIXED_PROMPT_LIMIT,
    conservative_token_estimate,
    fixed_messages,
    initial_messages,
    read_agents_md,
    repository_prompt,
    system_prompt,
)
from kcode.agent.runner import run_task
from kcode.config import Config, LlamaCppOptions
from kcode.events import MessageAdded
from kcode.tools import default_tools
from tests.conftest import git

QWEN_1_5B = Path.home() / ".cache/kcode/models/qwen2.5-coder-1.5b/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def test_agents_md_root_to_leaf(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "AGENTS.md").write_text("root rules")
    (tmp_path / "a" / "b" / "AGENTS.md").write_text("leaf rules")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "AGENTS.md").write_text("not on the path")
    text = read_agents_md(tmp_path, tmp_path / "a" / "b")
    assert text.index("root rules") < text.index("leaf rules") and "not on the path" not in text
    assert read_agents_md(tmp_path, tmp_path) .count("rules") == 1


def test_agents_md_is_capped(tmp_path):
    (tmp_path / "AGENTS.md").write_text("x" * (AGENTS_MD_LIMIT * 2))
    text = read_agents_md(tmp_path)
    assert len(text.encode()) < AGENTS_MD_LIMIT + 200 and text.endswith(f"[AGENTS.md truncated at {AGENTS_MD_LIMIT} bytes]")


def test_repository_part_holds_name_agents_md_and_pack():
    part = repository_prompt(repo_name="demo", agents_md="Use tabs.", repo_pack="<file path=\"a.py\">\n</file>")
    assert "`demo`" in part and "Use tabs." in part and '<file path="a.py">' in part
    assert "AGENTS.md" not in repository_prompt(repo_name="demo")


def test_the_head_is_fixed_prompt_then_repository_then_task():
    messages = initial_messages(repository_prompt(repo_name="demo", repo_pack="PACK"), "fix it")
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert messages[:1] == fixed_messages() and messages[0]["content"] == system_prompt()
    assert "demo" not in system_prompt() and "PACK" in messages[1]["content"] and messages[2]["content"] == "fix it"
    # what the loop needs: the edit-test discipline and how to end
    for needed in ("edit_file", "run_tests", "finish", "reproduce"):
        assert needed in system_prompt()


def _fixed_text() -> str:
    schemas = "\n".join(json.dumps(tool.to_openai(), ensure_ascii=False) for tool in default_tools().specs())
    return system_prompt() + schemas


def test_fixed_prompt_fits_its_bound_by_a_conservative_estimate():
    """Without the default model's tokenizer: an estimate that errs high, plus 100 tokens for
    the chat template's tool section (85 in Qwen2.5's)."""
    estimate = conservative_token_estimate(_fixed_text()) + 100
    assert estimate <= FIXED_PROMPT_LIMIT, estimate
    assert fixed_prompt_tokens(object(), default_tools().specs()) == (estimate, "estimate")


def test_model_facing_schemas_keep_names_types_and_required_only():
    for spec in default_tools().specs():
        lean = spec.to_openai()["function"]["parameters"]
        assert set(lean["properties"]) == set(spec.parameters["properties"])  # no parameter renamed or lost
        assert lean.get("required", []) == spec.parameters.get("required", [])
        assert "additionalProperties" not in json.dumps(lean) and '"default"' not in json.dumps(lean)
        assert spec.description and len(spec.description) < 220


@pytest.mark.slow
def test_fixed_prompt_fits_its_bound_with_the_default_models_tokenizer():
    """Counted as Qwen2.5-Coder-1.5B's chat template renders the system message with the tools."""
    path = Path(os.environ.get("KCODE_TEST_MODEL_1_5B", QWEN_1_5B))
    if not path.is_file():
        pytest.skip("the default model (qwen2.5-coder-1.5b) is not downloaded")
    from kcode.llm.llamacpp import GgufTokenizer

    tokenizer = GgufTokenizer(path)
    tools = default_tools().specs()
    real = tokenizer.count_prompt_tokens(fixed_messages(), tools)
    assert real <= FIXED_PROMPT_LIMIT, real
    rendered = tokenizer._template.render(fixed_messages(), tools, add_generation_prompt=False)
    assert conservative_token_estimate(rendered) >= real  # the estimate errs high on this text
    assert conservative_token_estimate(_fixed_text()) + 100 >= real  # and so does the fallback
    tokenizer.close()


def test_run_from_a_subdirectory_reads_its_agents_md(calc_repo, fix_script):
    (calc_repo / "AGENTS.md").write_text("Always run the tests.")
    (calc_repo / "calc" / "AGENTS.md").write_text("calc: keep functions pure.")
    git(calc_repo, "add", "-A")
    git(calc_repo, "commit", "-qm", "agents")
    events = []
    run_task("fix", Config(model=f"scripted:{fix_script}"), repo=calc_repo, cwd=calc_repo / "calc", subscribers=[events.append])
    heads = [e.message["content"] for e in events if isinstance(e, MessageAdded) and e.message["role"] == "system"]
    assert len(heads) == 2 and heads[0] == system_prompt()
    assert "Always run the tests." in heads[1] and "calc: keep functions pure." in heads[1]


def test_a_run_on_a_local_model_says_how_its_pack_budget_was_chosen(calc_repo, tmp_path):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    import io

    from kcode.headless.text import TextRenderer
    from kcode.llm.models import write_tiny_llama_moe

    path = write_tiny_llama_moe(tmp_path / "tiny.gguf", context_length=16384)
    # generous times: the tiny model's calibration, load and packing take seconds on a loaded
    # machine, which would otherwise leave no time for this task's part of the pack
    config = Config(model=str(path), max_steps=1, temperature=0.0, max_output_tokens=2, auto_test=False,
                    first_step_seconds=600, next_step_seconds=60, llamacpp=LlamaCppOptions(ctx=16384))

    def packed_event(task="fix add"):
        events, shown = [], io.StringIO()
        run_task(task, config, repo=calc_repo, subscribers=[events.append, TextRenderer(shown, color=False)])
        repository = [e.message for e in events if isinstance(e, MessageAdded)][1]["content"]
        return next(e for e in events if e.type == "context.packed"), shown.getvalue(), repository

    first, header, repository = packed_event()
    # a fast (tiny) model: the window share, in two parts: the same for every task, then this task's
    assert "## Contents" in repository and "## More for this task" in repository
    assert first.fixed_prompt_tokens > 1000 and not first.fixed_prompt_cached  # byte tokens: a big fixed part
    assert first.prefill_tokens_per_second > 0 and first.budget_reason in ("time", "window")
    assert first.expected_prefill_seconds is not None and "threads" in first.prefill_settings
    assert f"budget {first.budget} tokens ({first.budget_why})" in header and "llama.cpp: threads" in header
    second, _, again = packed_event("make mul faster")
    assert second.fixed_prompt_cached and second.restored_tokens > 0  # the fixed part and this repository's
    stable = repository.split("## More for this task")[0]
    assert again.startswith(stable)  # another task, the same task-independent part: its KV state is reused


def test_the_time_already_waited_counts_against_the_first_steps_budget(calc_repo, tmp_path):
    """``started_at`` (``kcode run``: its process start) moves the first step's budget: a
    run that began 19.9 s before its pack was planned has no time left for one and gets the
    minimum, which the same run started now (window share, a fast tiny model) does not.
    (The late run comes first: a cached pack would be kept, whatever the time.)"""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    import time

    from kcode.llm.models import write_tiny_llama_moe
    from kcode.llm.prefill import MIN_PACK_BUDGET

    path = write_tiny_llama_moe(tmp_path / "tiny.gguf", context_length=16384)
    config = Config(model=str(path), max_steps=1, temperature=0.0, max_output_tokens=2, auto_test=False, llamacpp=LlamaCppOptions(ctx=16384))

    def packed(**kwargs):
        events = []
        run_task("fix add", config, repo=calc_repo, subscribers=[events.append], **kwargs)
        return next(e for e in events if e.type == "context.packed")

    late = packed(started_at=time.perf_counter() - 19.9)  # first: nothing of this repository cached yet
    now = packed()
    assert now.budget > MIN_PACK_BUDGET and "loading and packing" not in now.budget_why
    assert late.budget == MIN_PACK_BUDGET and late.budget_reason == "time"
    assert "s of it loading and packing" in late.budget_why and "(at least 512)" in late.budget_why
