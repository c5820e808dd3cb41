"""Tiny random-weight GGUF models that llama.cpp loads (about 1 MB each), for tests.

Two architectures: a ``llama`` MoE and a ``deepseek2`` (MLA + routed and shared experts,
Kimi K2's architecture). The tokenizer is a SentencePiece-style vocabulary with byte
fallback (every text tokenizes), Kimi's chat markers as CONTROL tokens, and a Kimi-style
chat template, so the whole prompt → tokens → generation → parse path runs in a second.
The weights are random: the text the model generates is noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["KIMI_MARKERS", "TINY_CHAT_TEMPLATE", "write_tiny_llama_moe", "write_tiny_deepseek2"]

KIMI_MARKERS = [
    "<|im_system|>", "<|im_user|>", "<|im_assistant|>", "<|im_middle|>", "<|im_end|>",
    "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
    "<|tool_call_argument_begin|>", "<|tool_call_end|>", "<think>", "</think>",
]

# A compact Kimi K2-style template: tools declared in a ``tool_declare`` system message,
# assistant tool calls in the section format, results as ``## Return of functions.NAME:IDX``.
TINY_CHAT_TEMPLATE = (
    "{%- if tools -%}<|im_system|>tool_declare<|im_middle|>{{ tools | tojson }}<|im_end|>{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}<|im_system|>system<|im_middle|>{{ message.content }}<|im_end|>"
    "{%- elif message.role == 'user' -%}<|im_user|>user<|im_middle|>{{ message.content }}<|im_end|>"
    "{%- elif message.role == 'assistant' -%}<|im_assistant|>assistant<|im_middle|>"
    "{%- if thinking and message.reasoning_content -%}<think>{{ message.reasoning_content }}</think>{%- endif -%}"
    "{{ message.content or '' }}"
    "{%- if message.tool_calls -%}<|tool_calls_section_begin|>"
    "{%- for call in message.tool_calls -%}<|tool_call_begin|>{{ call.id }}<|tool_call_argument_begin|>"
    "{{ call.function.arguments }}<|tool_call_end|>{%- endfor -%}<|tool_calls_section_end|>"
    "{%- endif -%}<|im_end|>"
    "{%- elif message.role == 'tool' -%}<|im_system|>tool<|im_middle|>## Return of {{ message.tool_call_id }}\n"
    "{{ message.content }}<|im_end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}"
)

_NORMAL_PIECES = ["▁", "▁the", "▁a", "e", "t", "o", "read", "_file", "functions", "path"]


def _vocab() -> tuple[list[str], list[float], list[int]]:
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += KIMI_MARKERS
    types += [gguf.TokenType.CONTROL] * len(KIMI_MARKERS)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += _NORMAL_PIECES
    types += [gguf.TokenType.NORMAL] * len(_NORMAL_PIECES)
    scores = [0.0] * len(tokens)
    for index in range(len(_NORMAL_PIECES)):
        scores[len(tokens) - len(_NORMAL_PIECES) + index] = -float(index + 1)
    return tokens, scores, [int(t) for t in types]


def _write_tokenizer(writer: object, context_length: int) -> int:
    tokens, scores, types = _vocab()
    writer.add_tokenizer_model("llama")  # type: ignore[attr-defined]
    writer.add_token_list(tokens)  # type: ignore[attr-defined]
    writer.add_token_scores(scores)  # type: ignore[attr-defined]
    writer.add_token_types(types)  # type: ignore[attr-defined]
    writer.add_bos_token_id(1)  # type: ignore[attr-defined]
    writer.add_eos_token_id(2)  # type: ignore[attr-defined]
    writer.add_eot_token_id(tokens.index("<|im_end|>"))  # type: ignore[attr-defined]
    writer.add_add_bos_token(False)  # type: ignore[attr-defined]
    writer.add_add_space_prefix(False)  # type: ignore[attr-defined]
    writer.add_chat_template(TINY_CHAT_TEMPLATE)  # type: ignore[attr-defined]
    return len(tokens)



def _write_vocab_and_embeddings(writer: Any, arch: str, rng: Any, context_length: int, n_embd: int) -> None:
    """The tokenizer plus the tensors every architecture shares: embeddings, final norm, output."""
    n_vocab = _write_tokenizer(writer, context_length)
    writer.add_uint32(f"{arch}.vocab_size", n_vocab)
    writer.add_tensor("token_embd.weight", _tensor(rng, n_vocab, n_embd))
    writer.add_tensor("output_norm.weight", _tensor(rng, n_embd, norm=True))
    writer.add_tensor("output.weight", _tensor(rng, n_vocab, n_embd))

def _tensor(rng: np.random.Generator, *shape: int, norm: bool = False) -> np.ndarray:
    """A float32 array; ``shape`` is numpy order (the reverse of ggml's ne)."""
    import numpy as np

    if norm:
        return np.ones(shape, dtype=np.float32)
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def _finish(writer: object) -> None:
    writer.write_header_to_file()  # type: ignore[attr-defined]
    writer.write_kv_data_to_file()  # type: ignore[attr-defined]
    writer.write_tensors_to_file()  # type: ignore[attr-defined]
    writer.close()  # type: ignore[attr-defined]


def write_tiny_llama_moe(path: Path, *, n_layer: int = 2, n_expert: int = 4,
                         context_length: int = 4096, seed: int = 0) -> Path:
    """A ``llama`` MoE: 64 wide, 4 heads (2 KV heads), ``n_expert`` experts with 2 active."""
    import gguf

    path = Path(path)
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd, n_head, n_head_kv, n_ff = 64, 4, 2, 64
    head_dim = n_embd // n_head
    writer = gguf.GGUFWriter(str(path), "llama")
    arch = "llama"
    writer.add_uint32(f"{arch}.context_length", context_length)
    writer.add_uint32(f"{arch}.embedding_length", n_embd)
    writer.add_uint32(f"{arch}.block_count", n_layer)
    writer.add_uint32(f"{arch}.feed_forward_length", n_ff)
    writer.add_uint32(f"{arch}.attention.head_count", n_head)
    writer.add_uint32(f"{arch}.attention.head_count_kv", n_head_kv)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    writer.add_uint32(f"{arch}.rope.dimension_count", head_dim)
    writer.add_uint32(f"{arch}.expert_count", n_expert)
    writer.add_uint32(f"{arch}.expert_used_count", 2)
    _write_vocab_and_embeddings(writer, arch, rng, context_length, n_embd)
    for i in range(n_layer):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", _tensor(rng, n_embd, norm=True))
        writer.add_tensor(f"{blk}.attn_q.weight", _tensor(rng, n_embd, n_embd))
        writer.add_tensor(f"{blk}.attn_k.weight", _tensor(rng, n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{blk}.attn_v.weight", _tensor(rng, n_head_kv * head_dim, n_embd))
        writer.add_tensor(f"{blk}.attn_output.weight", _tensor(rng, n_embd, n_embd))
        writer.add_tensor(f"{blk}.ffn_norm.weight", _tensor(rng, n_embd, norm=True))
        writer.add_tensor(f"{blk}.ffn_gate_inp.weight", _tensor(rng, n_expert, n_embd))
        writer.add_tensor(f"{blk}.ffn_gate_exps.weight", _tensor(rng, n_expert, n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_up_exps.weight", _tensor(rng, n_expert, n_ff, n_embd))
        writer.add_tensor(f"{blk}.ffn_down_exps.weight", _tensor(rng, n_expert, n_embd, n_ff))
    _finish(writer)
    return path


def write_tiny_deepseek2(path: Path, *, n_layer: int = 3, n_expert: int = 4,
                         context_length: int = 4096, seed: int = 0, split_max_tensors: int = 0) -> Path:
    """A ``deepseek2`` with MLA (kv_lora 32 + rope 32), layer 0 dense, 1 shared expert.

    With ``split_max_tensors`` the model is written as shards (``NAME-00001-of-0000N.gguf``,
    like the public Kimi GGUFs) and the first shard's path is returned.
    """
    import gguf

    path = Path(path)
    import numpy as np

    rng = np.random.default_rng(seed)
    n_embd, n_head, n_ff, n_ff_exp = 64, 4, 64, 32
    q_lora, kv_lora, rope, nope, v_head = 32, 32, 32, 16, 16
    arch = "deepseek2"
    writer = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    writer.add_uint32(f"{arch}.context_length", context_length)
    writer.add_uint32(f"{arch}.embedding_length", n_embd)
    writer.add_uint32(f"{arch}.block_count", n_layer)
    writer.add_uint32(f"{arch}.feed_forward_length", n_ff)
    writer.add_uint32(f"{arch}.attention.head_count", n_head)
    writer.add_uint32(f"{arch}.attention.head_count_kv", 1)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    writer.add_uint32(f"{arch}.rope.dimension_count", rope)
    writer.add_uint32(f"{arch}.leading_dense_block_count", 1)
    writer.add_uint32(f"{arch}.attention.q_lora_rank", q_lora)
    writer.add_uint32(f"{arch}.attention.kv_lora_rank", kv_lora)
    writer.add_uint32(f"{arch}.attention.key_length", kv_lora + rope)
    writer.add_uint32(f"{arch}.attention.value_length", kv_lora)
    writer.add_uint32(f"{arch}.attention.key_length_mla", nope + rope)
    writer.add_uint32(f"{arch}.attention.value_length_mla", v_head)
    writer.add_uint32(f"{arch}.expert_count", n_expert)
    writer.add_uint32(f"{arch}.expert_used_count", 2)
    writer.add_uint32(f"{arch}.expert_feed_forward_length", n_ff_exp)
    writer.add_uint32(f"{arch}.expert_shared_count", 1)
    writer.add_float32(f"{arch}.expert_weights_scale", 1.0)
    writer.add_bool(f"{arch}.expert_weights_norm", True)
    writer.add_uint32(f"{arch}.expert_gating_func", 2)  # sigmoid, as in DeepSeek V3 / Kimi K2
    _write_vocab_and_embeddings(writer, arch, rng, context_length, n_embd)
    for i in range(n_layer):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", _tensor(rng, n_embd, norm=True))
        writer.add_tensor(f"{blk}.attn_q_a_norm.weight", _tensor(rng, q_lora, norm=True))
        writer.add_tensor(f"{blk}.attn_kv_a_norm.weight", _tensor(rng, kv_lora, norm=True))
        writer.add_tensor(f"{blk}.attn_q_a.weight", _tensor(rng, q_lora, n_embd))
        writer.add_tensor(f"{blk}.attn_q_b.weight", _tensor(rng, n_head * (nope + rope), q_lora))
        writer.add_tensor(f"{blk}.attn_kv_a_mqa.weight", _tensor(rng, kv_lora + rope, n_embd))
        writer.add_tensor(f"{blk}.attn_k_b.weight", _tensor(rng, n_head, kv_lora, nope))
        writer.add_tensor(f"{blk}.attn_v_b.weight", _tensor(rng, n_head, v_head, kv_lora))
        writer.add_tensor(f"{blk}.attn_output.weight", _tensor(rng, n_embd, n_head * v_head))
        writer.add_tensor(f"{blk}.ffn_norm.weight", _tensor(rng, n_embd, norm=True))
        if i == 0:
            writer.add_tensor(f"{blk}.ffn_gate.weight", _tensor(rng, n_ff, n_embd))
            writer.add_tensor(f"{blk}.ffn_up.weight", _tensor(rng, n_ff, n_embd))
            writer.add_tensor(f"{blk}.ffn_down.weight", _tensor(rng, n_embd, n_ff))
            continue
        writer.add_tensor(f"{blk}.ffn_gate_inp.weight", _tensor(rng, n_expert, n_embd))
        writer.add_tensor(f"{blk}.exp_probs_b.bias", _tensor(rng, n_expert))
        writer.add_tensor(f"{blk}.ffn_gate_exps.weight", _tensor(rng, n_expert, n_ff_exp, n_embd))
        writer.add_tensor(f"{blk}.ffn_up_exps.weight", _tensor(rng, n_expert, n_ff_exp, n_embd))
        writer.add_tensor(f"{blk}.ffn_down_exps.weight", _tensor(rng, n_expert, n_embd, n_ff_exp))
        writer.add_tensor(f"{blk}.ffn_gate_shexp.weight", _tensor(rng, n_ff_exp, n_embd))
        writer.add_tensor(f"{blk}.ffn_up_shexp.weight", _tensor(rng, n_ff_exp, n_embd))
        writer.add_tensor(f"{blk}.ffn_down_shexp.weight", _tensor(rng, n_embd, n_ff_exp))
    _finish(writer)
    if split_max_tensors:
        return min(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))
    return path
