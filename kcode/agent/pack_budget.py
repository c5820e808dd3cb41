"""The first step's pack budget, from what the model says about its prefill.

Before the pack is built: make the fixed prompt ready (restored from the prefix cache, or
evaluated and saved), learn the prefill speed (stored, or a short calibration run), ask what
the cache holds of this repository's head, and let
:func:`kcode.llm.prefill.choose_pack_budget` pick the budget: a task-independent part, the
same for every task (its budget is noted with the cache entry, so the next run packs it
again at that size and restores it), and a part for the task. Backends without these
abilities (HTTP servers before their first answer, scripted models) get the window share.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from kcode.agent.prompt import conservative_token_estimate, fixed_messages, system_prompt
from kcode.config import Config
from kcode.llm.base import ChatModel, ToolSpec
from kcode.llm.prefill import PackBudget, choose_pack_budget

__all__ = ["FirstStepPlan", "plan_first_step", "fixed_prompt_tokens", "describe_settings"]

_TEMPLATE_ALLOWANCE = 100  # a chat template's markers and tool-section wording, when not rendered
_PACKING_SECONDS = 0.5  # building the pack from a warm index (a cold one is measured in the first run)
# The stored speed comes from prompts that start at an empty context or anywhere in a
# conversation; the pack is evaluated after the ~1,100-token fixed prompt, where attention
# costs more (the 1.5B model on 2 cores: 64 tok/s over the fixed prompt, 55-57 over the
# pack after it). Planning at 85 % keeps the first token within first_step_seconds.
SPEED_SHARE = 0.85


@dataclass
class FirstStepPlan:
    budget: PackBudget
    fixed_tokens: int
    fixed_cached: bool
    settings: str  # the backend's prefill settings, for the run header


def fixed_prompt_tokens(model: object, tools: list[ToolSpec]) -> tuple[int, str]:
    """(tokens, how counted) of the system prompt plus the tool schemas as ``model`` sees them:
    rendered by its chat template when it has one here, else counted or estimated."""
    messages = fixed_messages()
    count_prompt = getattr(model, "count_prompt_tokens", None)
    if count_prompt is not None:
        return count_prompt(messages, tools), "chat template"
    schemas = "\n".join(json.dumps(tool.to_openai(), ensure_ascii=False) for tool in tools)
    count = getattr(model, "count_tokens", None)
    if count is not None:
        return count(system_prompt() + schemas) + _TEMPLATE_ALLOWANCE, "tokenizer + template allowance"
    return conservative_token_estimate(system_prompt() + schemas) + _TEMPLATE_ALLOWANCE, "estimate"


def describe_settings(settings: dict | None) -> str:
    """llama.cpp settings that set the prefill speed (a model's ``settings``), in one line."""
    if not settings:
        return ""
    threads = settings.get("n_threads_batch", settings.get("n_threads"))
    parts = [f"threads {threads}", f"batch {settings.get('n_batch')}/{settings.get('n_ubatch')}",
             f"flash-attn {'on' if settings.get('flash_attn') else 'off'}", f"kv {settings.get('kv_type', 'f16')}"]
    if settings.get("n_gpu_layers"):
        parts.append(f"gpu layers {settings['n_gpu_layers']}")
    if settings.get("repack") is False:
        parts.append("no weight repacking")
    return ", ".join(parts)


def plan_first_step(config: Config, model: ChatModel, tools: list[ToolSpec], *, window_tokens: int,
                    other_tokens: int, label: str = "", repository_overhead: int = 0,
                    started_at: float | None = None) -> FirstStepPlan:
    """The pack budget for a new conversation with ``model``.

    ``other_tokens``: what the first prompt holds besides the fixed part and the pack (task,
    repository header, AGENTS.md). ``label``: the repository (prefix cache entries carry it).
    ``repository_overhead``: tokens of the repository part that are not the pack.
    ``started_at``: the ``time.perf_counter()`` at which the user's wait began (for ``kcode
    run``, the process start): what has passed since counts against the time budget. None:
    only the model's load does.
    """
    prepare = getattr(model, "prepare_prefix", None)
    status = prepare(fixed_messages(), tools, label=label) if prepare is not None else None
    if status is not None:
        fixed_tokens, fixed_cached = status.tokens, status.cached
    else:
        fixed_tokens, fixed_cached = fixed_prompt_tokens(model, tools)[0], False
    speed = None
    measure = getattr(model, "prefill_speed", None)
    if measure is not None:  # a stored figure, else (unless --pack-budget decides) a calibration run
        found = measure(measure=config.pack_budget is None)
        speed = found.tokens_per_second if found is not None else None
    cached_head = getattr(model, "cached_prefix", None)
    cached = cached_head(label) if cached_head is not None else None
    restored = 0
    if cached is not None:  # the task-independent part's budget last time, else its size
        restored = int(cached.get("stable_budget") or max(0, cached["tokens"] - repository_overhead))
    # the wait before the first token also holds what came before (start-up, the model's
    # load, a calibration) and the packing itself
    if started_at is not None:
        spent = max(0.0, time.perf_counter() - started_at) + _PACKING_SECONDS
    else:
        spent = getattr(model, "load_seconds", 0.0) + _PACKING_SECONDS
    budget = choose_pack_budget(
        window_tokens=window_tokens, window_share=config.pack_share, override=config.pack_budget,
        tokens_per_second=speed, first_step_seconds=config.first_step_seconds, spent_seconds=spent,
        next_step_seconds=config.next_step_seconds, fixed_tokens=fixed_tokens, fixed_cached=fixed_cached,
        other_tokens=other_tokens, restored_tokens=restored, speed_share=SPEED_SHARE,
    )  # fmt: skip
    note = getattr(model, "note_prefix", None)
    if note is not None:
        note(stable_budget=budget.stable_tokens)
    return FirstStepPlan(budget, fixed_tokens, fixed_cached, describe_settings(getattr(model, "settings", None)))
