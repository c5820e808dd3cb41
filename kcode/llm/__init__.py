"""Model backends behind one protocol (``kcode.llm.base.ChatModel``).

The backends and what they share live here: the protocol (``base``), the OpenAI-compatible
HTTP backend, the scripted and chaos models, ``create_model`` (``registry``), tool-call
parsing and prefill speeds. Four sub-packages hold one concept each:

- ``kcode.llm.llamacpp``: llama.cpp in process (the backend, loading, chat template, prefix cache);
- ``kcode.llm.models``: model files (the catalog, model-hub and PyPI-part downloads);
- ``kcode.llm.gguf``: GGUF inspection and tensor placement plans;
- ``kcode.llm.serve``: kept-alive model servers (``keep_alive``): a llama.cpp model loaded once
  in a loopback process of its own, for the next runs.
"""

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
