"""What kcode needs from a GGUF file's header and tensor table, read without loading weights.

``gguf.GGUFReader`` memory-maps the file and only parses the header and the tensor infos;
tensor data stays on disk until touched, so this is cheap even for a 600 GB model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.errors import ModelUnavailable

__all__ = [
    "GgufInfo", "TensorInfo", "read_gguf_info", "kv_bytes_per_token", "split_files", "KV_TYPES",
]

# Bytes per element of the KV cache types kcode offers (q8_0: 34 B per 32, q4_0: 18 B per 32).
KV_TYPES: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_LAYER = re.compile(r"^blk\.(\d+)\.")
_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    n_bytes: int
    ggml_type: str
    shape: tuple[int, ...]

    @property
    def layer(self) -> int | None:
        match = _LAYER.match(self.name)
        return int(match.group(1)) if match else None


@dataclass
class GgufInfo:
    path: Path
    file_bytes: int
    architecture: str
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    def key(self, suffix: str, default: Any = None) -> Any:
        """An architecture-scoped key, e.g. ``key("block_count")`` → ``llama.block_count``."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def n_layer(self) -> int:
        return int(self.key("block_count", 0))

    @property
    def context_length(self) -> int:
        return int(self.key("context_length", 4096))

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


def split_files(path: Path) -> list[Path]:
    """All shards of a split model (``NAME-00001-of-00008.gguf``), or just ``path``."""
    match = _SPLIT.match(path.name)
    if not match:
        return [path]
    stem, _, count = match.groups()
    return [path.with_name(f"{stem}-{index:05d}-of-{count}.gguf") for index in range(1, int(count) + 1)]


def _open(path: Path) -> Any:
    from gguf import GGUFReader

    if not path.is_file():
        raise ModelUnavailable(f"no such model file: {path}")
    try:
        return GGUFReader(path, "r")
    except (ValueError, OSError) as error:
        raise ModelUnavailable(f"{path} is not a readable GGUF file: {error}") from error


def _tensors(reader: Any) -> list[TensorInfo]:
    return [
        TensorInfo(name=t.name, n_bytes=int(t.n_bytes), ggml_type=t.tensor_type.name,
                   shape=tuple(int(d) for d in t.shape))
        for t in reader.tensors
    ]


def read_gguf_info(path: Path | str) -> GgufInfo:
    """Header metadata (scalars and short arrays; long arrays like the vocabulary skipped)
    and the tensor table of every shard of a split model."""
    path = Path(path)
    try:
        from gguf import GGUFValueType
    except ImportError as error:  # pragma: no cover - gguf is a dependency of the llama extra
        raise ModelUnavailable("reading GGUF files needs the 'gguf' package") from error
    reader = _open(path)
    metadata: dict[str, Any] = {}
    for name, reader_field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        types = reader_field.types
        if types and types[0] == GGUFValueType.ARRAY and len(reader_field.data) > 1024:
            continue  # vocabulary, merges, scores: not needed here and slow to decode
        try:
            metadata[name] = reader_field.contents()
        except (ValueError, UnicodeDecodeError):
            continue
    tensors = _tensors(reader)
    file_bytes = path.stat().st_size
    shards = split_files(path)
    if int(metadata.get("split.count", 1) or 1) > 1 and len(shards) > 1:
        for shard in shards:
            if shard != path:
                tensors += _tensors(_open(shard))
                file_bytes += shard.stat().st_size
    architecture = str(metadata.get("general.architecture", "unknown"))
    return GgufInfo(path, file_bytes, architecture, metadata, tensors)


def _per_layer(value: Any, layer: int, default: int) -> int:
    """Some keys (head_count_kv) are per-layer arrays in a few architectures."""
    if isinstance(value, list):
        return int(value[layer]) if layer < len(value) else default
    return int(value) if value is not None else default


def kv_bytes_per_token(info: GgufInfo, kv_type: str = "f16") -> list[float]:
    """KV cache bytes per token for each layer.

    ``deepseek2`` (MLA, Kimi K2) caches one latent row of kv_lora_rank + rope dims per layer
    per token and no separate V; other architectures cache K and V for every KV head.
    """
    element = KV_TYPES.get(kv_type)
    if element is None:
        raise ModelUnavailable(f"unknown KV cache type {kv_type!r} (use {', '.join(KV_TYPES)})")
    per_layer: list[float] = []
    n_embd = int(info.key("embedding_length", 0))
    n_head_value = info.key("attention.head_count", 1)
    kv_lora = info.key("attention.kv_lora_rank")
    for layer in range(info.n_layer):
        if info.architecture == "deepseek2" and kv_lora:
            rope = int(info.key("rope.dimension_count", 64))
            width = int(kv_lora) + rope
        else:
            n_head = _per_layer(n_head_value, layer, 1) or 1
            n_head_kv = _per_layer(info.key("attention.head_count_kv"), layer, n_head)
            key_length = int(info.key("attention.key_length", n_embd // n_head))
            value_length = int(info.key("attention.value_length", n_embd // n_head))
            width = n_head_kv * (key_length + value_length)
        per_layer.append(width * element)
    return per_layer
