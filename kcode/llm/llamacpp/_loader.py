"""Construct a ``llama_cpp.Llama`` with kcode's placement settings.

Maps the user's flags to llama.cpp, avoiding llama-cpp-python's traps (REFERENCE §2):
``n_gpu_layers`` and ``flash_attn`` are always set explicitly, expert offload goes through
tensor buffer overrides (:mod:`kcode.llm.llamacpp._offload`) with ``use_mmap=False``, and the context
defaults to the model's trained length, lowered when the KV cache would not fit in memory.

Prompt-processing defaults, measured by hand (2 AMD EPYC cores, llama-cpp-python 0.3.36 CPU
build, Qwen2.5-Coder-1.5B Q4_K_M, interleaved runs, best of 3, quiet machine): from an empty
context, 768 tokens: n_batch/n_ubatch 512/512 77 tok/s, 512/256 78, 256/256 78, 1024/1024 75,
flash attention 79; 512 tokens after 1,500 held: flash attention off 64, on 64, q8_0 KV (needs
flash attention) 37. One thread instead of two halves it (0.5B: 73 against 120-140 tok/s).
Flash attention does not change prefill (1,500 tokens: 59-63 off, 65 on) nor decoding (22 and
21 tok/s) but shrinks the compute buffer at a 32K context from 848 to 303 MiB, and a fresh
process then loads in 1.8-4.2 s instead of 5.3-8.1 s. So: threads = physical cores for
generation and batches, ``n_batch`` = ``n_ubatch`` = 512, flash attention on, KV cache f16
(:data:`PREFILL_DEFAULTS`; ``kcode models bench`` measures a variant).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.config import LlamaCppOptions
from kcode.errors import ModelUnavailable, UsageError
from kcode.llm.gguf import KV_TYPES, GgufInfo, kv_bytes_per_token, read_gguf_info
from kcode.llm.llamacpp._offload import (
    BufferOverrides,
    build_overrides,
    gpu_offload_supported,
    model_params_with_overrides,
    placement_rules,
)

__all__ = ["LoadedModel", "load_llama", "llama_settings", "choose_context", "physical_cores", "PREFILL_DEFAULTS"]

_MIN_CTX = 2048
# The fastest prompt processing measured on a CPU (module docstring); a GPU build keeps them.
PREFILL_DEFAULTS = {"n_batch": 512, "n_ubatch": 512, "flash_attn_cpu": True}
_GGML_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 8}  # ggml_type values (ggml.h)


@dataclass
class LoadedModel:
    llm: Any  # llama_cpp.Llama
    n_ctx: int
    overrides: BufferOverrides | None  # must outlive the model
    notices: list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # what llama.cpp was given


def choose_context(info: GgufInfo, options: LlamaCppOptions, available_bytes: int,
                   on_gpu: bool) -> tuple[int, str | None]:
    """(n_ctx, notice). The requested context is kept; the trained one is lowered to fit."""
    trained = info.context_length
    if options.ctx:
        return options.ctx, None
    if on_gpu:
        return trained, None  # VRAM is not measured here; `kcode models plan` does that
    per_token = sum(kv_bytes_per_token(info, options.kv_type or "f16"))
    budget = available_bytes * 0.9 - info.file_bytes
    ctx = trained
    while ctx > _MIN_CTX and per_token * ctx > budget:
        ctx //= 2
    if ctx == trained:
        return ctx, None
    return ctx, (
        f"context lowered from the model's {trained} tokens to {ctx}: the KV cache at "
        f"{trained} tokens needs {per_token * trained / 2**30:.1f} GiB and {info.file_bytes / 2**30:.1f} "
        f"GiB of weights must also fit in {available_bytes / 2**30:.1f} GiB of free memory "
        f"(pass --ctx to choose, --kv-type q8_0 to halve the cache)")


def physical_cores() -> int:
    """Physical CPU cores (prompt processing gains nothing from SMT siblings)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        cores = None
    return max(1, cores or os.cpu_count() or 1)


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def llama_settings(options: LlamaCppOptions, *, n_ctx: int, on_gpu: bool) -> dict[str, Any]:
    """What llama.cpp is given for ``options`` with a context of ``n_ctx`` tokens (``on_gpu``:
    a GPU backend is present): the defaults filled in. The loader passes these; the run's
    header, ``kcode models plan`` and the prefill-speed key show them."""
    gpu_layers = options.gpu_layers if options.gpu_layers is not None else (-1 if on_gpu else 0)
    threads = options.threads or physical_cores()
    n_batch = min(options.n_batch or PREFILL_DEFAULTS["n_batch"], n_ctx)
    flash_attn = options.flash_attn
    if flash_attn is None:
        flash_attn = options.kv_type is not None or (gpu_layers != 0 and on_gpu) or PREFILL_DEFAULTS["flash_attn_cpu"]
    return {
        "n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": min(options.n_ubatch or PREFILL_DEFAULTS["n_ubatch"], n_batch),
        "n_threads": threads, "n_threads_batch": threads, "flash_attn": flash_attn, "n_gpu_layers": gpu_layers,
        "kv_type": options.kv_type or "f16", "repack": options.repack,
    }  # fmt: skip


def load_llama(path: Path, options: LlamaCppOptions, *, seed: int | None = None, verbose: bool = False) -> LoadedModel:
    """Load the model and a context; every llama.cpp failure becomes ModelUnavailable.
    ``verbose``: llama.cpp's own log on stderr."""
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelUnavailable(
            "GGUF models need llama-cpp-python: pip install 'kcode[llama]'") from error
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelUnavailable(f"no such model file: {path}")
    if options.kv_type is not None and options.kv_type not in KV_TYPES:
        raise UsageError(f"--kv-type must be one of {', '.join(KV_TYPES)}, got {options.kv_type!r}")
    try:  # kcode's own header reader: no vocabulary decoded (0.05 s, not 0.5 s, for the 1.5B model)
        info = read_gguf_info(path)
    except ModelUnavailable:
        raise
    except (OSError, ValueError, KeyError, IndexError, struct.error) as error:
        raise ModelUnavailable(f"cannot read {path}: {error}") from error
    on_gpu = gpu_offload_supported()
    on_gpu_layers = on_gpu and options.gpu_layers != 0
    n_ctx, notice = choose_context(info, options, _available_memory(), on_gpu_layers)
    notices = [notice] if notice else []
    rules = placement_rules(options.override_tensor, cpu_moe=options.cpu_moe, n_cpu_moe=options.n_cpu_moe)
    overrides = build_overrides(rules)
    settings = llama_settings(options, n_ctx=n_ctx, on_gpu=on_gpu)
    kwargs: dict[str, Any] = {
        key: settings[key]
        for key in ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "flash_attn", "n_gpu_layers")
    }
    kwargs.update(use_mmap=overrides is None, verbose=verbose)
    if options.kv_type is not None:
        kwargs["type_k"] = kwargs["type_v"] = _GGML_TYPES[options.kv_type]
    if seed is not None:
        kwargs["seed"] = seed
    try:
        with model_params_with_overrides(overrides, repack=options.repack):
            llm = llama_cpp.Llama(str(path), **kwargs)
    except (ValueError, RuntimeError) as error:
        raise ModelUnavailable(f"llama.cpp could not load {path}: {error}") from error
    settings["offload"] = [f"{pattern}={buffer}" for pattern, buffer in rules]
    return LoadedModel(llm, n_ctx, overrides, notices, settings)
