"""``--prefix-cache DIR``: the KV state of the stable prompt prefix, saved across runs.

The stable prefix is the system block and the repo pack: the messages up to and including
the first user message (the prompt layout keeps it unchanged while the conversation grows).
Its KV state is written with ``llama_state_seq_save_file`` under a key that hashes the
model file's identity, the KV type and the prefix's token ids, and read back with
``llama_state_seq_load_file`` on the next run. (llama-cpp-python's ``LlamaDiskCache`` is not
used: a hit deletes the entry.)
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from kcode.llm.base import Message

__all__ = ["PrefixCache", "stable_prefix"]

log = logging.getLogger("kcode.llm")
_FORMAT_VERSION = b"kcode-prefix-v1"


def stable_prefix(messages: list[Message]) -> list[Message]:
    """The messages up to and including the first user message."""
    for index, message in enumerate(messages):
        if message.get("role") == "user":
            return messages[: index + 1]
    return list(messages)


class PrefixCache:
    def __init__(self, directory: Path, model_path: Path, kv_type: str) -> None:
        self.directory = directory
        stat = model_path.stat()
        self._identity = f"{model_path.name}\0{stat.st_size}\0{kv_type}".encode()

    def path_for(self, tokens: list[int]) -> Path:
        digest = hashlib.sha256(_FORMAT_VERSION)
        digest.update(self._identity)
        digest.update(b"\0")
        digest.update((ctypes.c_int32 * len(tokens))(*tokens))
        return self.directory / f"{digest.hexdigest()[:32]}.kvstate"

    def load(self, llm: Any, tokens: list[int]) -> bool:
        """Restore ``tokens``' KV state into sequence 0; False when absent or unusable."""
        import llama_cpp

        path = self.path_for(tokens)
        if not path.is_file():
            return False
        capacity = len(tokens)
        tokens_out = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        read = llama_cpp.llama_state_seq_load_file(
            llm._ctx.ctx, str(path).encode(), 0, tokens_out, capacity, ctypes.byref(count))
        if read == 0 or list(tokens_out[: count.value]) != tokens:
            log.warning("prefix cache: %s is unusable; recomputing the prefix", path)
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            return False
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return True

    def save(self, llm: Any, tokens: list[int]) -> None:
        """Write the KV state of sequence 0, which must hold exactly ``tokens``."""
        import llama_cpp

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(tokens)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(
            llm._ctx.ctx, str(partial).encode(), 0, array, len(tokens))
        if written == 0:
            partial.unlink(missing_ok=True)
            log.warning("prefix cache: could not write %s", path)
            return
        os.replace(partial, path)
