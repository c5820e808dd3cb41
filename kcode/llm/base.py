"""The model layer's contract: messages, tool specs, stream chunks and ``ChatModel``.

A backend streams *one step*: text and reasoning deltas, then a single :class:`StepEnd`
holding the complete message, its parsed tool calls and the usage. Tool calls whose
arguments could not be parsed are returned with ``error`` set, never silently dropped: the
loop turns them into a format-error observation and does not store them in the
conversation.

Messages are plain dicts in the OpenAI chat shape, so they serialise to the session log as
they are::

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "reasoning": str,                         # assistant only, may be ""
     "tool_calls": [{"id", "name", "arguments": dict}],   # assistant only
     "tool_call_id": str, "name": str}         # tool only
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kcode.cancel import CancelToken

__all__ = [
    "Message",
    "ToolSpec",
    "ToolCall",
    "TokenUsage",
    "TextChunk",
    "ReasoningChunk",
    "StepEnd",
    "StreamChunk",
    "ChatModel",
    "estimate_tokens",
    "lean_schema",
]

Message = dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, description, JSON schema of the arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The tool as the model reads it (chat templates, API requests): the lean schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": lean_schema(self.parameters),
            },
        }


# What the model-facing schema leaves out: bounds and ``additionalProperties`` are checked
# when a call is validated (against the full ``parameters``), defaults are the tool's
# business, and each parameter's meaning is in the tool's description (prompts/tools/*.md).
# The full schema still drives validation, grammars and the error a bad call gets back.
_LEAN_DROPPED = frozenset({
    "additionalProperties", "default", "description", "exclusiveMaximum", "exclusiveMinimum",
    "maxItems", "maxLength", "maximum", "minItems", "minLength", "minimum", "title",
})


def lean_schema(schema: Any) -> Any:
    """A JSON schema reduced to what a model needs to write a call: names, types,
    ``required``, ``enum``, nesting. Keeps the object's own top-level keys' order."""
    if isinstance(schema, list):
        return [lean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    lean: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            lean[key] = {name: lean_schema(sub) for name, sub in value.items()}
        elif key not in _LEAN_DROPPED:
            lean[key] = lean_schema(value)
    return lean


@dataclass
class ToolCall:
    """One tool call parsed from the model's output.

    ``arguments`` is the decoded JSON object; when decoding failed it is ``{}``, ``raw`` holds
    what the model wrote and ``error`` says what was wrong.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    raw: str = ""
    error: str | None = None

    def to_message(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class TokenUsage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: TokenUsage) -> None:
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.output_tokens += other.output_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class ReasoningChunk:
    text: str


@dataclass
class StepEnd:
    """The end of one streamed step."""

    content: str
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish_reason: str = "stop"  # "stop" | "tool_calls" | "length"


StreamChunk = TextChunk | ReasoningChunk | StepEnd


@runtime_checkable
class ChatModel(Protocol):
    """A model that streams one step at a time.

    ``stream`` yields :class:`TextChunk` / :class:`ReasoningChunk` and ends with exactly one
    :class:`StepEnd`. It makes one attempt and never retries: it raises
    :class:`kcode.errors.TransientModelError` for failures worth retrying (the agent loop
    retries them: ``kcode.agent.retry.RetryPolicy``) and other
    :class:`kcode.errors.ModelError` subclasses for fatal ones. It must stop promptly when
    ``cancel`` is set.

    ``state``/``restore`` carry whatever the backend needs to continue a resumed session
    (the scripted model's position; nothing for stateless servers).
    """

    name: str

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamChunk]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token)."""
    return (len(text) + 3) // 4
