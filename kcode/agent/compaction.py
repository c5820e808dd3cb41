"""Compaction: keep a long conversation inside the model's window.

Triggered by tokens (window − reserved output − 10 % headroom). First the old observations
are masked (the last few tool outputs stay verbatim, older ones become a one-line stub); if
that is not enough, the middle of the conversation is summarized by the model into a
first-person handoff note (``prompts/compaction/instructions.md``; every text compaction
puts before the model is in ``prompts/compaction/``). Always kept verbatim: the system prompt
(with AGENTS.md), the task, and the last few messages; the live plan is re-attached to the
note. A summary rebuilds the prompt's prefix anyway, so the repository part is re-packed as the
repository is now (the caller's ``repack``). The full history stays in the session log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from kcode.agent.notes import compaction_note, note_prefix
from kcode.errors import ModelError
from kcode.llm.base import ChatModel, Message, StepEnd, TextChunk
from kcode.tools.plan import render_todo

__all__ = ["CompactionPolicy", "CompactionResult", "compact", "mask_observations", "conversation_tokens", "HANDOFF_HEADER"]

HANDOFF_HEADER = compaction_note("handoff_header")  # what the note that replaces the middle starts with
_TRANSCRIPT_TOOL_CHARS = 1200


@dataclass
class CompactionPolicy:
    context_window: int
    reserve_output: int
    headroom: float = 0.10
    keep_tool_outputs: int = 6
    keep_last_messages: int = 6
    target: float = 0.5  # after compaction, aim below this share of the threshold

    @property
    def threshold(self) -> int:
        return max(1, int(self.context_window - self.reserve_output - self.headroom * self.context_window))


@dataclass
class CompactionResult:
    messages: list[Message]
    strategy: str  # "mask" | "summarize" | "drop"
    tokens_before: int
    tokens_after: int


def conversation_tokens(messages: list[Message], count_tokens: Callable[[str], int]) -> int:
    total = 0
    for message in messages:
        total += count_tokens(str(message.get("content", ""))) + 4
        if message.get("reasoning"):
            total += count_tokens(message["reasoning"])
        for call in message.get("tool_calls") or []:
            total += count_tokens(json.dumps(call.get("arguments", {}))) + 8
    return total


def mask_observations(messages: list[Message], keep: int) -> tuple[list[Message], int]:
    """Replace all but the last ``keep`` tool outputs by a one-line stub."""
    tool_indices = [i for i, m in enumerate(messages) if m.get("role") == "tool"]
    masked = 0
    result = list(messages)
    stub_start = note_prefix("compaction", "masked_output")
    for index in tool_indices[: max(0, len(tool_indices) - keep)]:
        content = str(messages[index].get("content", ""))
        if content.startswith(stub_start):
            continue
        first = content.splitlines()[0][:120] if content else ""
        result[index] = {**messages[index], "content": compaction_note("masked_output", chars=len(content), start=repr(first))}
        masked += 1
    return result, masked


def _split(messages: list[Message], keep_last: int) -> tuple[list[Message], list[Message], list[Message]]:
    """(head, middle, tail): head = system + task; the tail never starts with a tool result
    (its assistant call would be cut off)."""
    head_end = 0
    while head_end < len(messages) and messages[head_end].get("role") == "system":
        head_end += 1
    if head_end < len(messages) and messages[head_end].get("role") == "user":
        head_end += 1
    start = max(head_end, len(messages) - keep_last)
    while start > head_end and messages[start].get("role") == "tool":
        start -= 1
    return messages[:head_end], messages[head_end:start], messages[start:]


def _transcript(middle: list[Message]) -> str:
    """The compacted steps as lines the summary request quotes. The labels are a format (the
    scripted model reads ``TOOL CALL`` lines to summarize), so they stay here."""
    lines = []
    for message in middle:
        role = message.get("role")
        content = str(message.get("content", ""))
        if role == "assistant":
            if content:
                lines.append(f"ASSISTANT: {content}")
            for call in message.get("tool_calls") or []:
                lines.append(f"TOOL CALL {call.get('name')}({json.dumps(call.get('arguments', {}), ensure_ascii=False)})")
        elif role == "tool":
            if len(content) > _TRANSCRIPT_TOOL_CHARS:
                content = content[: _TRANSCRIPT_TOOL_CHARS // 2] + "\n[...]\n" + content[-_TRANSCRIPT_TOOL_CHARS // 2 :]
            lines.append(f"RESULT of {message.get('name', 'tool')}: {content}")
        else:
            lines.append(f"{str(role).upper()}: {content}")
    return "\n".join(lines)


def _summarize(model: ChatModel, middle: list[Message], todo: list[dict], char_limit: int) -> str:
    transcript = _transcript(middle)
    if len(transcript) > char_limit:  # keep the most recent part of what is summarized
        transcript = compaction_note("transcript_cut") + "\n" + transcript[-char_limit:]
    request = [
        {"role": "system", "content": compaction_note("instructions")},
        {"role": "user", "content": compaction_note("summary_request", transcript=transcript, plan=render_todo(todo))},
    ]
    parts: list[str] = []
    end: StepEnd | None = None
    for chunk in model.stream(request, []):
        if isinstance(chunk, TextChunk):
            parts.append(chunk.text)
        elif isinstance(chunk, StepEnd):
            end = chunk
    text = (end.content if end is not None and end.content else "".join(parts)).strip()
    if not text:
        raise ModelError("the model returned an empty handoff note")
    return text


def _mechanical_note(middle: list[Message]) -> str:
    """A summary that needs no model: which tools ran on what (used when the model fails)."""
    calls = [
        f"- {call.get('name')} {json.dumps(call.get('arguments', {}), ensure_ascii=False)[:160]}"
        for message in middle
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
    ]
    return compaction_note("mechanical_summary", calls="\n".join(calls[-40:]))


def compact(
    messages: list[Message],
    model: ChatModel,
    policy: CompactionPolicy,
    todo: list[dict],
    *,
    force_summary: bool = False,
    repack: Callable[[], str] | None = None,
) -> CompactionResult:
    """``repack``: a fresh repository part for the prompt head, put in place when the
    conversation is summarized (its prefix is rebuilt anyway); masking never calls it."""
    count = model.count_tokens
    before = conversation_tokens(messages, count)
    goal = int(policy.threshold * policy.target)
    masked, _ = mask_observations(messages, policy.keep_tool_outputs)
    after = conversation_tokens(masked, count)
    if after <= goal and not force_summary:
        return CompactionResult(masked, "mask", before, after)
    head, middle, tail = _split(masked, policy.keep_last_messages)
    if not middle:
        return CompactionResult(masked, "mask", before, after)
    strategy = "summarize"
    try:
        note = _summarize(model, middle, todo, char_limit=max(4000, policy.threshold * 2))
    except ModelError:
        strategy, note = "drop", _mechanical_note(middle)
    parts = [HANDOFF_HEADER, note, *([compaction_note("current_plan", plan=render_todo(todo))] if todo else [])]
    handoff = {"role": "user", "content": "\n\n".join(parts)}
    compacted = [*head, handoff, *tail]
    if repack is not None:
        _repack_head(compacted, repack)
    return CompactionResult(compacted, strategy, before, conversation_tokens(compacted, count))


def _repack_head(messages: list[Message], repack: Callable[[], str]) -> None:
    """Replace the repository part (the last of the leading system messages, when the fixed
    system prompt comes before it) by ``repack()``."""
    systems = 0
    while systems < len(messages) and messages[systems].get("role") == "system":
        systems += 1
    if systems >= 2:
        messages[systems - 1] = {**messages[systems - 1], "content": repack()}
