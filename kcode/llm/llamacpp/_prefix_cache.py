"""The prefix cache: KV states of prompt prefixes, kept on disk across runs.

On by default for in-process models (``prefix_cache = "off"`` turns it off). A prompt is laid
out so that its head is stable (see :mod:`kcode.agent.prompt`): the system message and the
tool schemas, the same in every repository, then the repository's part (name, AGENTS.md, the
pack), then the task. An entry is the KV state of sequence 0 written with
``llama_state_seq_save_file`` after a prefill, with the token ids it holds. A new prompt
restores the entry that shares the *longest token prefix* with it (cut to that length) and
evaluates only the rest, so

- the first run in a new repository restores the fixed part (an entry of its own, written the
  first time it is evaluated) and prefills only the repository's part and the task;
- the next run in the same repository restores the repository's part too;
- after a small commit, the part of the pack before the first changed file is restored.

Entries are keyed by the model file's identity (name, size, a hash of its first and last MiB),
the settings that shape the KV state (KV types, flash attention, the llama-cpp-python version)
and the stable prefix's token ids: an entry written by another model or other settings is
never read. The folder is bounded: least recently used entries go first once the total size
passes the limit (4 GiB by default). ``kcode cache list|clear`` manages it.

On disk, per entry: ``KEY.kv`` (llama.cpp's file: its tokens and KV data) and ``KEY.json``
(what ``kcode cache list`` shows, and the token ids, so matching reads no KV data).
llama-cpp-python's ``LlamaDiskCache`` is not used: a hit deletes the entry.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.paths import cache_dir

__all__ = ["CacheEntry", "PrefixStore", "model_identity", "prefix_cache_dir", "DEFAULT_LIMIT_BYTES"]

_FORMAT = "kcode-prefix-v2"
DEFAULT_LIMIT_BYTES = 4 * 2**30
# Restoring costs reading the file; assume a slow disk so a big entry is not read for a few tokens.
_READ_BYTES_PER_SECOND = 400e6
_RESTORE_OVERHEAD_SECONDS = 0.01
_OFF = ("off", "none", "no", "false", "0")


def prefix_cache_dir(setting: str | None) -> Path | None:
    """Where the prefix cache lives for a ``prefix_cache`` setting (None: the default folder;
    "off": no cache)."""
    if setting is None:
        return cache_dir() / "prefix"
    if setting.strip().lower() in _OFF or not setting.strip():
        return None
    return Path(setting).expanduser()


def model_identity(model_path: Path, settings: dict[str, Any]) -> str:
    """A hash of what makes a KV state valid: the model file (name, size, first and last MiB)
    and the settings that change the state's layout or values."""
    import llama_cpp

    size = model_path.stat().st_size
    digest = hashlib.sha256(f"{_FORMAT}\0{model_path.name}\0{size}\0".encode())
    with model_path.open("rb") as handle:
        digest.update(handle.read(2**20))
        handle.seek(max(0, size - 2**20))
        digest.update(handle.read(2**20))
    shaping = {key: settings.get(key) for key in ("kv_type", "flash_attn")}
    shaping["llama_cpp"] = llama_cpp.__version__
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _encode_tokens(tokens: list[int]) -> str:
    return base64.b64encode(bytes((ctypes.c_int32 * len(tokens))(*tokens))).decode("ascii")


def _decode_tokens(text: str) -> list[int]:
    data = base64.b64decode(text)
    return list((ctypes.c_int32 * (len(data) // 4)).from_buffer_copy(data))


def _common_prefix(a: list[int], b: list[int]) -> int:
    import numpy as np

    n = min(len(a), len(b))
    if n == 0:
        return 0
    differs = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(differs[0]) if differs.size else n


@dataclass
class CacheEntry:
    key: str
    identity: str
    model: str  # the model file's name
    n_tokens: int  # tokens held by the state file
    stable_tokens: int  # of which the stable prefix (system, tools, repository part)
    fixed_tokens: int  # of which the fixed part (system and tools)
    size: int  # bytes of the state file
    created: float
    last_used: float
    label: str  # what the stable prefix belongs to, e.g. the repository's path
    directory: Path
    tokens_b64: str = ""
    note: dict[str, Any] = field(default_factory=dict)  # what the writer wants to know later (e.g. the pack budget)

    @property
    def state_path(self) -> Path:
        return self.directory / f"{self.key}.kv"

    @property
    def meta_path(self) -> Path:
        return self.directory / f"{self.key}.json"

    def tokens(self) -> list[int]:
        return _decode_tokens(self.tokens_b64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "identity": self.identity, "model": self.model, "n_tokens": self.n_tokens,
            "stable_tokens": self.stable_tokens, "fixed_tokens": self.fixed_tokens, "size": self.size,
            "created": self.created, "last_used": self.last_used, "label": self.label, "note": self.note,
        }  # fmt: skip


def _read_entry(meta_path: Path) -> CacheEntry | None:
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT:
            return None
        return CacheEntry(
            key=data["key"], identity=data["identity"], model=data["model"], n_tokens=int(data["n_tokens"]),
            stable_tokens=int(data["stable_tokens"]), fixed_tokens=int(data["fixed_tokens"]),
            size=int(data["size"]), created=float(data["created"]), last_used=float(data["last_used"]),
            label=str(data.get("label", "")), directory=meta_path.parent, tokens_b64=data["tokens"],
            note=dict(data.get("note") or {}),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, path)


class PrefixStore:
    """One cache folder (shared by all models; entries carry their identity). ``on_notice``
    hears of an entry that cannot be restored or written (the prompt is evaluated instead)."""

    def __init__(self, directory: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES, *,
                 on_notice: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.limit_bytes = limit_bytes
        self._on_notice = on_notice

    def _notice(self, text: str) -> None:
        if self._on_notice is not None:
            self._on_notice(text)

    # --- reading ----------------------------------------------------------------------

    def entries(self, identity: str | None = None) -> list[CacheEntry]:
        """Complete entries, most recently used first."""
        if not self.directory.is_dir():
            return []
        found = []
        for meta_path in self.directory.glob("*.json"):
            entry = _read_entry(meta_path)
            if entry is None or not entry.state_path.is_file():
                continue
            if identity is None or entry.identity == identity:
                found.append(entry)
        return sorted(found, key=lambda entry: entry.last_used, reverse=True)

    def best(self, identity: str, tokens: list[int], *, have: int = 0,
             tokens_per_second: float | None = None) -> tuple[CacheEntry, int] | None:
        """The entry worth restoring for ``tokens`` and how many of its tokens match, when
        restoring beats evaluating what the context lacks (it already holds ``have``)."""
        speed = tokens_per_second or 50.0
        best: tuple[float, CacheEntry, int] | None = None
        for entry in self.entries(identity):
            matched = _common_prefix(entry.tokens(), tokens)
            saved_seconds = (matched - have) / speed
            cost_seconds = _RESTORE_OVERHEAD_SECONDS + entry.size / _READ_BYTES_PER_SECOND
            gain = saved_seconds - cost_seconds
            if matched > have and gain > 0 and (best is None or gain > best[0]):
                best = (gain, entry, matched)
        return None if best is None else (best[1], best[2])

    def find(self, identity: str, tokens: list[int]) -> CacheEntry | None:
        """An entry whose tokens start with all of ``tokens``."""
        for entry in self.entries(identity):
            if entry.n_tokens >= len(tokens) and _common_prefix(entry.tokens(), tokens) == len(tokens):
                return entry
        return None

    # --- llama.cpp state --------------------------------------------------------------

    def load(self, llm: Any, entry: CacheEntry, matched: int) -> bool:
        """Restore ``entry`` into sequence 0, keeping its first ``matched`` tokens."""
        import llama_cpp

        capacity = max(entry.n_tokens, 1)
        tokens_out = (llama_cpp.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        llm.reset()
        read = llama_cpp.llama_state_seq_load_file(
            llm._ctx.ctx, str(entry.state_path).encode(), 0, tokens_out, capacity, ctypes.byref(count))
        expected = entry.tokens()
        if read == 0 or count.value != entry.n_tokens or list(tokens_out[: count.value]) != expected:
            self._notice(f"prefix cache: {entry.state_path} is unusable; evaluating the prompt instead")
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.n_tokens = 0
            return False
        if matched < entry.n_tokens and not llm._ctx.kv_cache_seq_rm(0, matched, -1):
            self._notice("prefix cache: this model's memory cannot be cut at a position; not restoring")
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            llm.n_tokens = 0
            return False
        llm.input_ids[:matched] = expected[:matched]
        llm.n_tokens = matched
        self._touch(entry)
        return True

    def save(self, llm: Any, identity: str, model_name: str, *, stable_tokens: int, fixed_tokens: int,
             label: str = "", note: dict[str, Any] | None = None) -> CacheEntry | None:
        """Write sequence 0 (everything the context holds). The key is the stable prefix: a
        later save with the same stable prefix replaces the entry."""
        import llama_cpp

        tokens = [int(t) for t in llm.input_ids[: llm.n_tokens]]
        if not tokens or stable_tokens > len(tokens):
            return None
        digest = hashlib.sha256(f"{_FORMAT}\0{identity}\0".encode())
        digest.update(bytes((ctypes.c_int32 * stable_tokens)(*tokens[:stable_tokens])))
        key = digest.hexdigest()[:32]
        self.directory.mkdir(parents=True, exist_ok=True)
        now = time.time()
        entry = CacheEntry(key, identity, model_name, len(tokens), stable_tokens, fixed_tokens, 0, now, now,
                           label, self.directory, _encode_tokens(tokens), dict(note or {}))
        partial = entry.state_path.with_name(f"{key}.kv.{os.getpid()}.tmp")
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        written = llama_cpp.llama_state_seq_save_file(llm._ctx.ctx, str(partial).encode(), 0, array, len(tokens))
        if written == 0:
            partial.unlink(missing_ok=True)
            self._notice(f"prefix cache: could not write {entry.state_path}")
            return None
        entry.size = partial.stat().st_size
        os.replace(partial, entry.state_path)
        _write_json(entry.meta_path, {"format": _FORMAT, **entry.to_dict(), "tokens": entry.tokens_b64})
        self.evict(keep=key)
        return entry

    # --- housekeeping -----------------------------------------------------------------

    def _touch(self, entry: CacheEntry) -> None:
        entry.last_used = time.time()
        try:
            _write_json(entry.meta_path, {"format": _FORMAT, **entry.to_dict(), "tokens": entry.tokens_b64})
        except OSError:
            pass

    def remove(self, entry: CacheEntry) -> int:
        for path in (entry.meta_path, entry.state_path):
            path.unlink(missing_ok=True)
        return entry.size

    def evict(self, keep: str | None = None) -> list[CacheEntry]:
        """Delete least recently used entries until the folder is within its limit."""
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        removed = []
        for entry in reversed(entries):  # oldest first
            if total <= self.limit_bytes:
                break
            if entry.key == keep:
                continue
            total -= self.remove(entry)
            removed.append(entry)
        return removed

    def clear(self, model: str | None = None) -> list[CacheEntry]:
        """Delete every entry (or those of the model file named ``model``) and stray files."""
        removed = [entry for entry in self.entries() if model is None or entry.model == model]
        for entry in removed:
            self.remove(entry)
        if model is None and self.directory.is_dir():
            for stray in self.directory.glob("*.tmp"):
                stray.unlink(missing_ok=True)
        return removed
