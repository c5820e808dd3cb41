"""Turn a ``--model`` spec into a :class:`~kcode.llm.base.ChatModel`.

Specs:
    scripted:FILE              a script of turns (tests, demos)
    chaos:RATE:SPEC            SPEC with faults injected at RATE (0..1)
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


def create_model(spec: str | None, options: ModelOptions | None = None) -> ChatModel:
    options = options or ModelOptions()
    if not spec:
        raise UsageError("no model configured: pass --model (e.g. --model scripted:FILE)")
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
    raise UsageError(f"unknown model {spec!r}")
