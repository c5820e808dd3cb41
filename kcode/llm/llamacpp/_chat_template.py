"""Render prompts with a GGUF's own chat template (``tokenizer.chat_template``).

The template runs in jinja2's immutable sandbox with the helpers Hugging Face templates
expect (``raise_exception``, ``strftime_now``, a ``tojson`` that keeps non-ASCII and does
not HTML-escape). kcode's messages are converted to the OpenAI shape templates are written
for: assistant ``reasoning`` → ``reasoning_content``, tool calls as
``{"id", "type": "function", "function": {"name", "arguments"}}``.

``arguments`` is a dict whose ``str()`` is the JSON text the model wrote, so templates that
print it (Kimi: ``{{ arguments }}``) reproduce the model's own bytes and templates that
serialise it (Qwen: ``arguments | tojson``) get an object.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from kcode.errors import ModelUnavailable
from kcode.llm.base import Message, ToolSpec

__all__ = ["ChatTemplate", "to_template_messages"]


class _JsonArguments(dict):  # type: ignore[type-arg]
    """Tool-call arguments: a mapping that prints as the JSON the model wrote."""

    def __init__(self, value: dict[str, Any], raw: str | None = None) -> None:
        super().__init__(value)
        self._raw = raw

    def __str__(self) -> str:
        return self._raw if self._raw is not None else json.dumps(self, ensure_ascii=False)


def _tojson(value: Any, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


def _raw_for(call: dict[str, Any], raw_arguments: dict[str, str]) -> str | None:
    """What the model wrote for ``call``'s arguments, if this model wrote them: an id seen in
    another conversation (another run on a shared server) must not lend its text."""
    raw = raw_arguments.get(call.get("id", ""))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        if isinstance(value, dict) and value != (call.get("arguments") or {}) and "arguments" in value.get("function", value):
            value = value.get("function", value)["arguments"]  # the whole call object (hermes)
            value = json.loads(value) if isinstance(value, str) else value
    except (ValueError, TypeError, AttributeError):
        return None
    return raw if value == (call.get("arguments") or {}) else None


def to_template_messages(messages: list[Message],
                         raw_arguments: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """kcode messages → the shapes chat templates expect."""
    raw_arguments = raw_arguments or {}
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        item: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
        if role == "assistant":
            item["reasoning_content"] = message.get("reasoning") or ""
            calls = message.get("tool_calls") or []
            if calls:
                item["tool_calls"] = [
                    {
                        "id": call.get("id", ""),
                        "type": "function",
                        "function": {
                            "name": call.get("name", ""),
                            "arguments": _JsonArguments(call.get("arguments") or {},
                                                        _raw_for(call, raw_arguments)),
                        },
                    }
                    for call in calls
                ]
        elif role == "tool":
            item["tool_call_id"] = message.get("tool_call_id", "")
            if message.get("name"):
                item["name"] = message["name"]
        converted.append(item)
    return converted


class ChatTemplate:
    """A compiled chat template plus the special-token strings it refers to."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        if not source:
            raise ModelUnavailable("the model has no chat template (tokenizer.chat_template)")
        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = environment.from_string(source)
        except TemplateError as error:
            raise ModelUnavailable(f"the model's chat template does not compile: {error}") from error
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[Message], tools: list[ToolSpec], *,
               add_generation_prompt: bool = True, thinking: bool = False,
               raw_arguments: dict[str, str] | None = None) -> str:
        from jinja2 import TemplateError

        try:
            return self._template.render(
                messages=to_template_messages(messages, raw_arguments),
                tools=[tool.to_openai() for tool in tools] or None,
                add_generation_prompt=add_generation_prompt,
                thinking=thinking,
                enable_thinking=thinking,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as error:
            raise ModelUnavailable(f"the model's chat template failed to render: {error}") from error

    @property
    def tool_call_format(self) -> str:
        """"kimi", "hermes" or "json": the tool-call syntax this template teaches."""
        if "<|tool_calls_section_begin|>" in self.source or "tool_call_begin" in self.source:
            return "kimi"
        if "<tool_call>" in self.source:
            return "hermes"
        return "json"


def _raise(message: str) -> None:
    from jinja2 import TemplateError

    raise TemplateError(message)
