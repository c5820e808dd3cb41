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

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.errors import ModelUnavailable, UsageError
from kcode.llm.gguf import KV_TYPES, GgufInfo, kv_bytes_per_token, read_gguf_info
from kcode.llm.llamacpp._offload import (
    BufferOverrides,
    build_overrides,
    gpu_offload_supported,
    model_params_with_overrides,
    placement_rules,
)

__all__ = ["Placement", "LoadedModel", "load_llama", "choose_context", "physical_cores", "PREFILL_DEFAULTS"]

log = logging.getLogger("kcode.llm")

_MIN_CTX = 2048
# The fastest prompt processing measured on a CPU (module docstring); a GPU build keeps them.
PREFILL_DEFAULTS = {"n_batch": 512, "n_ubatch": 512, "flash_attn_cpu": True}
_GGML_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 8}  # ggml_type values (ggml.h)


@dataclass
class Placement:
    gpu_layers: int | None = None  # None: all layers when a GPU backend is present, else 0
    cpu_moe: bool = False
    n_cpu_moe: int | None = None
    override_tensor: list[str] = field(default_factory=list)
    ctx: int | None = None  # None: the trained context, lowered to fit memory
    kv_type: str | None = None  # None: f16 without forcing flash attention
    threads: int | None = None  # None: the physical cores
    n_batch: int = PREFILL_DEFAULTS["n_batch"]
    n_ubatch: int | None = None  # None: PREFILL_DEFAULTS["n_ubatch"], at most n_batch
    flash_attn: bool | None = None  # None: PREFILL_DEFAULTS (on; a quantized KV cache needs it)
    seed: int | None = None
    repack: bool = True  # CPU weight repacking: 3 s more to load, same prefill, ~20 % faster generation
    verbose: bool = False  # llama.cpp's own log on stderr


@dataclass
class LoadedModel:
    llm: Any  # llama_cpp.Llama
    n_ctx: int
    overrides: BufferOverrides | None  # must outlive the model
    notices: list[str]
    settings: dict[str, Any] = field(default_factory=dict)  # what llama.cpp was given


def choose_context(info: GgufInfo, placement: Placement, available_bytes: int,
                   on_gpu: bool) -> tuple[int, str | None]:
    """(n_ctx, notice). The requested context is kept; the trained one is lowered to fit."""
    trained = info.context_length
    if placement.ctx:
        return placement.ctx, None
    if on_gpu:
        return trained, None  # VRAM is not measured here; `kcode models plan` does that
    per_token = sum(kv_bytes_per_token(info, placement.kv_type or "f16"))
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


def load_llama(path: Path, placement: Placement) -> LoadedModel:
    """Load the model and a context; every llama.cpp failure becomes ModelUnavailable."""
    try:
        import llama_cpp
    except ImportError as error:
        raise ModelUnavailable(
            "GGUF models need llama-cpp-python: pip install 'kcode[llama]'") from error
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelUnavailable(f"no such model file: {path}")
    if placement.kv_type is not None and placement.kv_type not in KV_TYPES:
        raise UsageError(f"--kv-type must be one of {', '.join(KV_TYPES)}, got {placement.kv_type!r}")
    try:  # kcode's own header reader: no vocabulary decoded (0.05 s, not 0.5 s, for the 1.5B model)
        info = read_gguf_info(path)
    except ModelUnavailable:
        raise
    except (OSError, ValueError, KeyError, IndexError, struct.error) as error:
        raise ModelUnavailable(f"cannot read {path}: {error}") from error
    on_gpu = gpu_offload_supported()
    gpu_layers = placement.gpu_layers
    if gpu_layers is None:
        gpu_layers = -1 if on_gpu else 0
    n_ctx, notice = choose_context(info, placement, _available_memory(), on_gpu and gpu_layers != 0)
    notices = [notice] if notice else []
    for message in notices:
        log.warning(message)
    rules = placement_rules(placement.override_tensor, cpu_moe=placement.cpu_moe, n_cpu_moe=placement.n_cpu_moe)
    overrides = build_overrides(rules)
    threads = placement.threads or physical_cores()
    n_batch = min(placement.n_batch, n_ctx)
    flash_attn = placement.flash_attn
    if flash_attn is None:
        flash_attn = placement.kv_type is not None or (gpu_layers != 0 and on_gpu) or PREFILL_DEFAULTS["flash_attn_cpu"]
    kwargs: dict[str, Any] = dict(
        n_ctx=n_ctx,
        n_batch=n_batch,
        n_ubatch=min(placement.n_ubatch or PREFILL_DEFAULTS["n_ubatch"], n_batch),
        n_gpu_layers=gpu_layers,
        use_mmap=overrides is None,
        flash_attn=flash_attn,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=placement.verbose,
    )
    if placement.kv_type is not None:
        kwargs["type_k"] = kwargs["type_v"] = _GGML_TYPES[placement.kv_type]
    if placement.seed is not None:
        kwargs["seed"] = placement.seed
    try:
        with model_params_with_overrides(overrides, repack=placement.repack):
            llm = llama_cpp.Llama(str(path), **kwargs)
    except (ValueError, RuntimeError) as error:
        raise ModelUnavailable(f"llama.cpp could not load {path}: {error}") from error
    settings = {key: kwargs[key] for key in ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch",
                                             "flash_attn", "n_gpu_layers")}
    settings["kv_type"] = placement.kv_type or "f16"
    settings["repack"] = placement.repack
    settings["offload"] = [f"{pattern}={buffer}" for pattern, buffer in rules]
    return LoadedModel(llm, n_ctx, overrides, notices, settings)
