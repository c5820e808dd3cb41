"""What kcode needs from a GGUF file's header and tensor table, read without loading weights.

The header and tensor table are read straight from a memory map (long arrays such as the
vocabulary are skipped, tensor data is never touched), so this is cheap even for a 600 GB
model split into shards.
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


# GGUF value types: (struct format, size) of the fixed-size ones; 8 is a string, 9 an array.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}  # fmt: skip
_STRING, _ARRAY = 8, 9
_LONG_ARRAY = 1024  # longer arrays (vocabulary, merges, scores) are skipped, not decoded


class _Header:
    """A GGUF file's header and tensor table, read straight from the file.

    ``gguf.GGUFReader`` decodes every element of every array into numpy views, which takes
    seconds for a 150K-token vocabulary; this walks over long arrays without decoding them
    (a string array still needs one length read per element) and reads nothing past the
    tensor table."""

    def __init__(self, path: Path) -> None:
        import mmap
        import struct

        self.unpack = struct.unpack_from
        with path.open("rb") as handle:
            self.buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.at = 0

    def read(self, fmt: str, size: int) -> Any:
        value = self.unpack(fmt, self.buffer, self.at)[0]
        self.at += size
        return value

    def string(self) -> str:
        length = self.read("<Q", 8)
        raw = self.buffer[self.at : self.at + length]
        if len(raw) != length:
            raise ValueError("truncated string")
        self.at += length
        return raw.decode("utf-8")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.read(*_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.read("<I", 4), self.read("<Q", 8)
            if count > _LONG_ARRAY:
                self.skip_array(item, count)
                return _SKIPPED
            return [self.value(item) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {kind}")

    def skip_array(self, item: int, count: int) -> None:
        if item in _SCALARS:
            self.at += _SCALARS[item][1] * count
        elif item == _STRING:
            unpack, buffer, at = self.unpack, self.buffer, self.at
            for _ in range(count):
                at += 8 + unpack("<Q", buffer, at)[0]
            self.at = at
        else:
            for _ in range(count):
                self.value(item)
        if self.at > len(self.buffer):
            raise ValueError("truncated array")

    def close(self) -> None:
        self.buffer.close()


_SKIPPED = object()


def _read_header(path: Path) -> tuple[dict[str, Any], list[TensorInfo]]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if not path.is_file():
        raise ModelUnavailable(f"no such model file: {path}")
    try:
        header = _Header(path)
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"{path} is not a readable GGUF file: {error}") from error
    try:
        if header.buffer[:4] != b"GGUF":
            raise ValueError("no GGUF magic number")
        header.at = 4
        version = header.read("<I", 4)
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = header.read("<Q", 8), header.read("<Q", 8)
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = header.string()
            value = header.value(header.read("<I", 4))
            if value is not _SKIPPED:
                metadata[key] = value
        tensors = []
        for _ in range(n_tensors):
            name = header.string()
            dims = tuple(header.read("<Q", 8) for _ in range(header.read("<I", 4)))
            ggml_type = GGMLQuantizationType(header.read("<I", 4))
            header.read("<Q", 8)  # offset of the data
            block, type_size = GGML_QUANT_SIZES[ggml_type]
            elements = 1
            for dim in dims:
                elements *= dim
            tensors.append(TensorInfo(name, elements // block * type_size, ggml_type.name, dims))
        return metadata, tensors
    except (ValueError, KeyError, UnicodeDecodeError, __import__("struct").error) as error:
        raise ModelUnavailable(f"{path} is not a readable GGUF file: {error}") from error
    finally:
        header.close()


def read_gguf_info(path: Path | str) -> GgufInfo:
    """Header metadata (scalars and short arrays; long arrays like the vocabulary skipped)
    and the tensor table of every shard of a split model."""
    path = Path(path)
    try:
        import gguf  # noqa: F401
    except ImportError as error:  # pragma: no cover - gguf is a dependency of the llama extra
        raise ModelUnavailable("reading GGUF files needs the 'gguf' package") from error
    metadata, tensors = _read_header(path)
    file_bytes = path.stat().st_size
    shards = split_files(path)
    if int(metadata.get("split.count", 1) or 1) > 1 and len(shards) > 1:
        for shard in shards:
            if shard != path:
                tensors += _read_header(shard)[1]
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
