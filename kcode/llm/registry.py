"""Turn a ``--model`` spec into a :class:`~kcode.llm.base.ChatModel`.

Specs:
    scripted:FILE              a script of turns (tests, demos)
    chaos:RATE:SPEC            SPEC with faults injected at RATE (0..1)
    openai:NAME moonshot:NAME openrouter:VENDOR/NAME llama-server:NAME vllm:NAME sglang:NAME
                               an OpenAI-compatible server (see kcode.llm.openai_compat)
    CATALOG-NAME               a catalog model (``kcode models list``), pulled on first use

With no spec at all the default catalog model runs (``qwen2.5-coder-1.5b``, on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kcode.errors import UsageError
from kcode.llm.base import ChatModel

__all__ = ["ModelOptions", "create_model"]


@dataclass
class ModelOptions:
    """Settings a backend may need besides the spec."""

    base_url: str | None = None
    session_id: str | None = None
    api_key: str | None = None  # else KCODE_API_KEY, else the provider's variable
    context_window: int | None = None  # overrides what the server or preset says


_OPENAI_KINDS = ("openai", "moonshot", "openrouter", "llama-server", "vllm", "sglang")


def _catalog_entry(name: str) -> bool:
    from kcode.llm.catalog import find_entry

    return find_entry(name) is not None


def create_model(spec: str | None, options: ModelOptions | None = None) -> ChatModel:
    options = options or ModelOptions()
    if not spec:
        from kcode.llm.catalog import DEFAULT_MODEL

        spec = DEFAULT_MODEL
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        from kcode.llm.scripted import ScriptedModel

        return ScriptedModel.from_file(Path(rest))
    if kind == "chaos":
        rate_text, _, inner_spec = rest.partition(":")
        try:
            rate = float(rate_text)
        except ValueError as error:
            raise UsageError(f"chaos model: invalid rate {rate_text!r} in {spec!r}") from error
        from kcode.llm.chaos import ChaosModel

        return ChaosModel(create_model(inner_spec, options), rate)
    if rest and kind in _OPENAI_KINDS:
        from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel

        return OpenAICompatModel(
            PROVIDERS[kind], rest, base_url=options.base_url, api_key=options.api_key,
            session_id=options.session_id, context_window=options.context_window,
        )  # fmt: skip
    if not rest and _catalog_entry(kind):
        from kcode.llm.catalog import ensure_model

        return create_model(str(ensure_model(kind)), options)  # the local .gguf branch
    raise UsageError(f"unknown model {spec!r}")
