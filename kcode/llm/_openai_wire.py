"""The OpenAI chat-completions wire format: our messages to the API's, SSE lines to events,
and streamed deltas to one finished step.

Our assistant messages carry ``reasoning`` and ``tool_calls`` as ``{"id", "name",
"arguments": dict}``; the API wants ``reasoning_content`` and ``{"id", "type": "function",
"function": {"name", "arguments": JSON string}}``. Tool results go back as role ``tool``
with their ``tool_call_id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kcode.llm.base import Message, StepEnd, TokenUsage, ToolCall
from kcode.llm.scripted import decode_arguments

__all__ = ["to_api_messages", "iter_sse_data", "StepAccumulator", "usage_from_api"]


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content)


def to_api_messages(messages: list[Message], *, send_reasoning: bool) -> list[dict[str, Any]]:
    """Convert to the API shape. With ``send_reasoning`` every assistant turn carries
    ``reasoning_content`` (Kimi's API answers 400 when it is missing, even if empty)."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": _text(message.get("content"))}
            if send_reasoning:
                item["reasoning_content"] = str(message.get("reasoning") or "")
            calls = message.get("tool_calls") or []
            if calls:
                item["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {
                            "name": call["name"],
                            "arguments": json.dumps(call.get("arguments") or {}, ensure_ascii=False),
                        },
                    }
                    for call in calls
                ]
            converted.append(item)
        elif role == "tool":
            converted.append(
                {"role": "tool", "tool_call_id": message.get("tool_call_id", ""), "content": _text(message.get("content"))}
            )
        else:
            converted.append({"role": role, "content": _text(message.get("content"))})
    return converted


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream, one per event."""
    buffer: list[str] = []
    for line in lines:
        if line == "":
            if buffer:
                yield "\n".join(buffer)
                buffer = []
        elif line.startswith("data:"):
            buffer.append(line[5:].removeprefix(" "))
        # comments (": keep-alive"), "event:", "id:" and "retry:" lines carry nothing we use
    if buffer:
        yield "\n".join(buffer)


def usage_from_api(usage: dict[str, Any] | None) -> TokenUsage:
    if not usage:
        return TokenUsage()
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens")
    if cached is None:
        cached = usage.get("cached_tokens") or 0  # Moonshot's older top-level field
    return TokenUsage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        cached_input_tokens=int(cached or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class StepAccumulator:
    """Collects one streamed response. ``feed`` returns the (reasoning, text) deltas of a
    chunk; ``finish`` builds the :class:`StepEnd`."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: TokenUsage | None = None
    timings: dict[str, Any] | None = None  # llama-server's: prompt_n, prompt_ms, prompt_per_second, ...

    def feed(self, chunk: dict[str, Any]) -> tuple[str, str]:
        if chunk.get("usage"):
            self.usage = usage_from_api(chunk["usage"])
        if isinstance(chunk.get("timings"), dict):
            self.timings = chunk["timings"]
        reasoning_delta = text_delta = ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            # "reasoning_content": Moonshot, llama-server, vLLM, SGLang; "reasoning": OpenRouter
            reasoning_delta += delta.get("reasoning_content") or delta.get("reasoning") or ""
            text_delta += delta.get("content") or ""
            for position, call in enumerate(delta.get("tool_calls") or []):
                # Deltas of one call share an index; the first names it, the rest add arguments.
                partial = self.calls.setdefault(int(call.get("index", position)), _PartialCall())
                partial.id = partial.id or call.get("id") or ""
                function = call.get("function") or {}
                name = function.get("name") or ""
                if name != partial.name:  # some servers repeat the full name in every delta
                    partial.name += name
                partial.arguments.append(function.get("arguments") or "")
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        self.reasoning.append(reasoning_delta)
        self.content.append(text_delta)
        return reasoning_delta, text_delta

    def finish(self, *, step_id: str) -> StepEnd:
        calls = []
        for index in sorted(self.calls):
            partial = self.calls[index]
            raw = "".join(partial.arguments)
            arguments, raw, error = decode_arguments(raw if raw.strip() else "{}")
            if not partial.name:
                error = error or "the tool call has no function name"
            call_id = partial.id or f"call_{step_id}_{index}"
            calls.append(ToolCall(call_id, partial.name, arguments, raw, error))
        reason = self.finish_reason or "stop"
        if reason not in ("stop", "tool_calls", "length"):
            reason = "tool_calls" if calls else "stop"  # e.g. "function_call", "eos"
        return StepEnd("".join(self.content), "".join(self.reasoning), calls, self.usage or TokenUsage(), reason)
