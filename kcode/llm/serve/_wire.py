"""What a kept-alive model server and its clients send each other: JSON bodies, and a step
streamed as one JSON object a line (``text``, ``reasoning``, then ``end`` or ``error``)."""

from __future__ import annotations

from typing import Any

from kcode.llm.base import ReasoningChunk, StepEnd, StreamChunk, TextChunk, TokenUsage, ToolCall, ToolSpec

__all__ = ["tools_to_wire", "tools_from_wire", "chunk_to_wire", "chunk_from_wire"]


def tools_to_wire(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]


def tools_from_wire(data: list[dict[str, Any]]) -> list[ToolSpec]:
    return [ToolSpec(item["name"], item["description"], item["parameters"]) for item in data]


def chunk_to_wire(chunk: StreamChunk) -> dict[str, Any]:
    if isinstance(chunk, TextChunk):
        return {"t": "text", "v": chunk.text}
    if isinstance(chunk, ReasoningChunk):
        return {"t": "reasoning", "v": chunk.text}
    return {
        "t": "end", "content": chunk.content, "reasoning": chunk.reasoning, "finish_reason": chunk.finish_reason,
        "usage": chunk.usage.as_dict(),
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments, "raw": c.raw, "error": c.error}
                       for c in chunk.tool_calls],
    }  # fmt: skip


def chunk_from_wire(data: dict[str, Any]) -> StreamChunk:
    kind = data.get("t")
    if kind == "text":
        return TextChunk(data["v"])
    if kind == "reasoning":
        return ReasoningChunk(data["v"])
    calls = [ToolCall(c["id"], c["name"], c.get("arguments") or {}, c.get("raw", ""), c.get("error"))
             for c in data.get("tool_calls", [])]
    return StepEnd(data.get("content", ""), data.get("reasoning", ""), calls, TokenUsage(**data.get("usage", {})),
                   data.get("finish_reason", "stop"))
