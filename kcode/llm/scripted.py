"""A deterministic model that replays a script: one turn per step, in order.

Script file (JSON)::

    {"turns": [{"content": "...", "reasoning": "...",
                "tool_calls": [{"name": "read_file", "arguments": {"path": "x.py"}}]}]}

A turn's ``finish_reason`` (default ``tool_calls`` or ``stop``) is what the step reports, e.g.
``length`` for an answer cut at the output cap; its ``chunk_seconds`` paces its stream (a
pause before each chunk, cut short by the cancel token: a slow model to interrupt). ``arguments`` may also be a string, passed through as the raw JSON the model "wrote" (so a
script can contain malformed calls). The position is part of the session state: a resumed
session continues with the next unconsumed turn. When the turns run out the step fails with
:class:`~kcode.errors.ModelUnavailable` instead of hanging.

A turn ``{"infill": "text"}`` answers a fill-in-the-middle request (:meth:`ScriptedModel.infill`,
the repair phase's line fills) instead of a step; when the next turn is not one, the model
answers that it has no such mode (None), and consumes nothing.

A request without tools is a compaction request, not an agent step: it is answered with a
deterministic handoff note built from the transcript, and consumes no turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.errors import ModelUnavailable, UsageError
from kcode.resources import read_prompt
from kcode.llm.base import (
    Message,
    ReasoningChunk,
    StepEnd,
    StreamChunk,
    TextChunk,
    TokenUsage,
    ToolCall,
    ToolSpec,
    estimate_tokens,
)

__all__ = ["ScriptedModel", "load_script", "decode_arguments"]


def load_script(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise UsageError(f"scripted model: no such file {path}") from error
    except json.JSONDecodeError as error:
        raise UsageError(f"scripted model: {path} is not valid JSON: {error}") from error
    turns = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise UsageError(f'scripted model: {path} must hold {{"turns": [{{...}}, ...]}}')
    return turns


def decode_arguments(raw: Any) -> tuple[dict[str, Any], str, str | None]:
    """Return (arguments, raw text, error) for a tool call's arguments as written."""
    if isinstance(raw, dict):
        return raw, json.dumps(raw), None
    text = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return {}, text, f"arguments are not valid JSON ({error.msg} at position {error.pos})"
    if not isinstance(value, dict):
        return {}, text, "arguments must be a JSON object"
    return value, text, None


def _prompt_estimate(messages: list[Message]) -> int:
    """What a tokenizer would roughly count for the prompt: text, reasoning, call arguments."""
    total = 0
    for message in messages:
        total += estimate_tokens(str(message.get("content", ""))) + 4
        total += estimate_tokens(str(message.get("reasoning") or ""))
        for call in message.get("tool_calls") or []:
            total += estimate_tokens(json.dumps(call.get("arguments", {}))) + 8
    return total


class ScriptedModel:
    def __init__(
        self,
        turns: list[dict[str, Any]],
        *,
        name: str = "scripted",
        context_window: int = 262_144,
        chunk_chars: int = 24,
    ) -> None:
        self.name = name
        self._turns = turns
        self._position = 0
        self._context_window = context_window
        self._chunk_chars = chunk_chars

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> ScriptedModel:
        return cls(load_script(path), name=f"scripted:{path}", **kwargs)

    @property
    def context_window(self) -> int:
        return self._context_window

    @property
    def position(self) -> int:
        return self._position

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def state(self) -> dict[str, Any]:
        return {"position": self._position}

    def restore(self, state: dict[str, Any]) -> None:
        self._position = int(state.get("position", 0))

    def close(self) -> None:
        pass

    def infill(self, prefix: str, suffix: str, *, cancel: CancelToken | None = None, lines: int = 1, **_: Any) -> tuple[str, TokenUsage] | None:
        """The next turn's ``infill`` text, its first ``lines`` lines; None when the next turn
        is not an infill turn."""
        turn = self._turns[self._position] if self._position < len(self._turns) else {}
        if "infill" not in turn:
            return None
        self._position += 1
        text = "\n".join(str(turn["infill"]).split("\n")[:lines]).rstrip("\n")
        return text, TokenUsage(input_tokens=estimate_tokens(prefix + suffix), output_tokens=estimate_tokens(text))

    def _handoff_note(self, messages: list[Message]) -> Iterator[StreamChunk]:
        """A summary for compaction, made up from the transcript (scripts are written for the
        loop's steps, not for compaction's requests). Other tool-less requests (the repair
        phase's rewrites) take the script's next turn."""
        transcript = str(messages[-1].get("content", "")) if messages else ""
        calls = [line for line in transcript.splitlines() if line.startswith("TOOL CALL ")]
        note = (
            "## Task\nContinue the scripted task.\n## Current state\n"
            f"I made {len(calls)} tool calls in the compacted part of the session"
            + (f"; the last was {calls[-1][len('TOOL CALL '):][:200]}." if calls else ".")
        )
        yield TextChunk(note)
        yield StepEnd(note, usage=TokenUsage(input_tokens=estimate_tokens(transcript), output_tokens=estimate_tokens(note)))

    def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamChunk]:
        if not tools and _is_summary_request(messages):  # compaction's: answered without a turn
            yield from self._handoff_note(messages)
            return
        if self._position >= len(self._turns):
            raise ModelUnavailable(
                f"the scripted model has no turns left (all {len(self._turns)} were used)"
            )
        turn = self._turns[self._position]
        self._position += 1
        reasoning = str(turn.get("reasoning", ""))
        content = str(turn.get("content", ""))
        pause = float(turn.get("chunk_seconds", 0) or 0)
        for text, chunk_type in ((reasoning, ReasoningChunk), (content, TextChunk)):
            for start in range(0, len(text), self._chunk_chars):
                if pause and (cancel or CancelToken()).wait(pause):
                    return  # cancelled: the stream ends without a result
                yield chunk_type(text[start : start + self._chunk_chars])
        calls = []
        for index, call in enumerate(turn.get("tool_calls") or []):
            arguments, raw, error = decode_arguments(call.get("arguments", {}))
            call_id = str(call.get("id") or f"call_{self._position}_{index}")
            calls.append(ToolCall(call_id, str(call.get("name", "")), arguments, raw, error))
        usage = TokenUsage(
            input_tokens=_prompt_estimate(messages),
            output_tokens=estimate_tokens(reasoning + content + "".join(c.raw for c in calls)),
        )
        yield StepEnd(content, reasoning, calls, usage, str(turn.get("finish_reason") or ("tool_calls" if calls else "stop")))


def _is_summary_request(messages: list[Message]) -> bool:
    """Whether ``messages`` is compaction's summary request (its system message is
    ``prompts/compaction/instructions.md``)."""
    first = messages[0] if messages else {}
    instructions = read_prompt("compaction/instructions.md").strip()
    return first.get("role") == "system" and str(first.get("content", "")).strip() == instructions
