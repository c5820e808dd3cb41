"""Model backends behind one protocol (``kcode.llm.base.ChatModel``)."""

from kcode.llm.base import (
    ChatModel,
    Message,
    ReasoningChunk,
    StepEnd,
    StreamChunk,
    TextChunk,
    TokenUsage,
    ToolCall,
    ToolSpec,
)
from kcode.llm.registry import ModelOptions, create_model

__all__ = [
    "ChatModel",
    "Message",
    "ReasoningChunk",
    "StepEnd",
    "StreamChunk",
    "TextChunk",
    "TokenUsage",
    "ToolCall",
    "ToolSpec",
    "ModelOptions",
    "create_model",
]
