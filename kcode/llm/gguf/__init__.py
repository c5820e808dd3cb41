"""GGUF inspection and placement: a model file's header and tensor table read without its
weights, the KV cache it needs per token, and where its tensors would go under llama.cpp's
placement flags (``kcode models plan``)."""

from kcode.llm.gguf._info import (
    KV_TYPES,
    GgufInfo,
    TensorInfo,
    kv_bytes_per_token,
    read_gguf_info,
    split_files,
)
from kcode.llm.gguf._plan import (
    EXPERT_REGEX,
    GroupPlacement,
    Plan,
    format_plan,
    make_plan,
    plan_info,
)

__all__ = [
    "EXPERT_REGEX",
    "KV_TYPES",
    "GgufInfo",
    "GroupPlacement",
    "Plan",
    "TensorInfo",
    "format_plan",
    "kv_bytes_per_token",
    "make_plan",
    "plan_info",
    "read_gguf_info",
    "split_files",
]
