"""A fault-injecting wrapper: with probability ``rate`` per call it raises a rate limit, a
server error or a timeout, cuts the stream short, or corrupts a tool call's JSON.

The wrapped model's state is rewound after every injected fault, so the next call replays
the same turn, as a real model would retry the same intent.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

from kcode.cancel import CancelToken
from kcode.errors import ModelTimeout, RateLimited, ServerError, StreamTruncated
from kcode.llm.base import (
    ChatModel,
    Message,
    StepEnd,
    StreamChunk,
    ToolCall,
    ToolSpec,
)

__all__ = ["ChaosModel", "FAULTS"]

FAULTS = ("rate_limit", "server_error", "timeout", "truncated", "malformed_json")


class ChaosModel:
    def __init__(self, inner: ChatModel, rate: float, *, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("chaos rate must be between 0 and 1")
        self.inner = inner
        self.rate = rate
        self.name = f"chaos:{rate}:{inner.name}"
        if seed is None and os.environ.get("KCODE_CHAOS_SEED"):
            seed = int(os.environ["KCODE_CHAOS_SEED"])
        self._random = random.Random(seed)
        self.injected: dict[str, int] = {fault: 0 for fault in FAULTS}

    @property
    def context_window(self) -> int:
        return self.inner.context_window

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def state(self) -> dict[str, Any]:
        return self.inner.state()

    def restore(self, state: dict[str, Any]) -> None:
        self.inner.restore(state)

    def close(self) -> None:
        self.inner.close()

    def stream(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamChunk]:
        if self._random.random() >= self.rate:
            yield from self.inner.stream(messages, tools, cancel=cancel)
            return
        fault = self._random.choice(FAULTS)
        self.injected[fault] += 1
        before = self.inner.state()
        if fault == "rate_limit":
            raise RateLimited("chaos: 429 Too Many Requests", retry_after=0.01)
        if fault == "server_error":
            raise ServerError("chaos: 500 Internal Server Error", retry_after=0.01)
        if fault == "timeout":
            raise ModelTimeout("chaos: the request timed out", retry_after=0.01)
        try:
            chunks = list(self.inner.stream(messages, tools, cancel=cancel))
        finally:
            self.inner.restore(before)
        if fault == "truncated":
            yield from chunks[: len(chunks) // 2]
            raise StreamTruncated("chaos: the stream ended before the step was complete", retry_after=0.01)
        end = chunks[-1]
        assert isinstance(end, StepEnd)
        yield from chunks[:-1]
        if not end.tool_calls:  # nothing to corrupt: cut the stream instead
            raise StreamTruncated("chaos: the stream ended before the step was complete", retry_after=0.01)
        broken = end.tool_calls[0]
        raw = broken.raw or "{}"
        corrupted = ToolCall(broken.id, broken.name, {}, raw[: max(1, len(raw) // 2)], "chaos: arguments are not valid JSON (truncated object)")
        yield StepEnd(end.content, end.reasoning, [corrupted, *end.tool_calls[1:]], end.usage, end.finish_reason)
