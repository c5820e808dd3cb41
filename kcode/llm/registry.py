"""Turn a ``--model`` spec into a :class:`~kcode.llm.base.ChatModel`.

Specs:
    scripted:FILE              a script of turns (tests, demos)
    chaos:RATE:SPEC            SPEC with faults injected at RATE (0..1)
    openai:NAME moonshot:NAME openrouter:VENDOR/NAME llama-server:NAME vllm:NAME sglang:NAME
                               an OpenAI-compatible server (see kcode.llm.openai_compat)
    PATH.gguf                  a local GGUF file, run in process by llama.cpp
    CATALOG-NAME               a catalog model (``kcode models list``), pulled on first use

With no spec at all the default catalog model runs (``qwen2.5-coder-1.5b``, on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kcode.errors import UsageError
from kcode.llm.base import ChatModel

__all__ = ["ModelOptions", "create_model", "prefix_cache_dir", "speed_store_path"]


@dataclass
class ModelOptions:
    """Settings a backend may need besides the spec."""

    base_url: str | None = None
    session_id: str | None = None
    api_key: str | None = None  # else KCODE_API_KEY, else the provider's variable
    context_window: int | None = None  # overrides what the server or preset says
    # llama.cpp in process (PATH.gguf): placement, context, KV cache, sampling
    gpu_layers: int | None = None  # None: all when a GPU backend is present, else 0
    cpu_moe: bool = False  # routed experts of every layer in CPU RAM
    n_cpu_moe: int | None = None  # routed experts of the first N layers in CPU RAM
    override_tensor: list[str] = field(default_factory=list)  # REGEX=BUFFER, first match wins
    ctx: int | None = None  # None: the model's trained context, lowered to fit RAM
    kv_type: str | None = None  # f16 | q8_0 | q4_0 (K and V alike; turns on flash attention)
    threads: int | None = None  # None: the physical cores
    n_batch: int | None = None  # None: kcode.llm.llamacpp._loader.PREFILL_DEFAULTS
    n_ubatch: int | None = None
    flash_attn: bool | None = None  # None: on (measured: same prefill, faster load); a quantized KV cache needs it
    repack: bool = True  # llama.cpp's CPU weight repacking (off: loads ~3 s faster, generates slower)
    constrain_tools: bool = False  # GBNF-constrained tool calls after the opener
    prefix_cache: str | None = None  # KV states of prompt prefixes: None = cache_dir()/prefix, "off" = none
    prefix_cache_gib: float = 4.0  # the prefix cache's size limit (least recently used entries go first)
    temperature: float | None = None  # None: 0.6
    seed: int | None = None
    max_output_tokens: int | None = None  # per step; None: 8192
    thinking: bool = False  # the chat template's `thinking` switch


_OPENAI_KINDS = ("openai", "moonshot", "openrouter", "llama-server", "vllm", "sglang")


def _catalog_entry(name: str) -> bool:
    from kcode.llm.models import find_entry

    return find_entry(name) is not None


def create_model(spec: str | None, options: ModelOptions | None = None) -> ChatModel:
    options = options or ModelOptions()
    if not spec:
        from kcode.llm.models import DEFAULT_MODEL

        spec = DEFAULT_MODEL
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        from kcode.llm.scripted import ScriptedModel

        return ScriptedModel.from_file(Path(rest), **({"context_window": options.ctx} if options.ctx else {}))
    if kind == "chaos":
        rate_text, _, inner_spec = rest.partition(":")
        try:
            rate = float(rate_text)
        except ValueError as error:
            raise UsageError(f"chaos model: invalid rate {rate_text!r} in {spec!r}") from error
        from kcode.llm.chaos import ChaosModel

        return ChaosModel(create_model(inner_spec, options), rate)
    if rest and kind in _OPENAI_KINDS:
        from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel

        sampling = {"temperature": options.temperature, "seed": options.seed, "max_tokens": options.max_output_tokens}
        return OpenAICompatModel(
            PROVIDERS[kind], rest, base_url=options.base_url, api_key=options.api_key,
            session_id=options.session_id, context_window=options.context_window,
            extra_body={key: value for key, value in sampling.items() if value is not None},
            speed_store=speed_store_path(),
        )  # fmt: skip
    if spec.endswith(".gguf"):
        return _llamacpp_model(Path(spec), options)
    if not rest and _catalog_entry(kind):
        from kcode.llm.models import ensure_model

        return create_model(str(ensure_model(kind)), options)  # the local .gguf branch
    raise UsageError(f"unknown model {spec!r}")


def _llamacpp_model(path: Path, options: ModelOptions) -> ChatModel:
    from kcode.llm.llamacpp import LlamaCppModel, Placement, Sampling

    placement = Placement(
        gpu_layers=options.gpu_layers, cpu_moe=options.cpu_moe, n_cpu_moe=options.n_cpu_moe,
        override_tensor=list(options.override_tensor), ctx=options.ctx or options.context_window,
        kv_type=options.kv_type, threads=options.threads, seed=options.seed, n_ubatch=options.n_ubatch,
        flash_attn=options.flash_attn, repack=options.repack, **({"n_batch": options.n_batch} if options.n_batch else {}),
    )
    sampling = Sampling() if options.temperature is None else Sampling(options.temperature)
    return LlamaCppModel(
        path, placement=placement, sampling=sampling, constrain_tools=options.constrain_tools,
        prefix_cache=prefix_cache_dir(options.prefix_cache),
        prefix_cache_bytes=int(options.prefix_cache_gib * 2**30),
        speed_store=speed_store_path(), max_output_tokens=options.max_output_tokens or 8192,
        thinking=options.thinking,
    )


_OFF = ("off", "none", "no", "false", "0")


def prefix_cache_dir(setting: str | None) -> Path | None:
    """Where the prefix cache lives for a ``prefix_cache`` setting (None: the default folder;
    "off": no cache)."""
    from kcode.config import cache_dir

    if setting is None:
        return cache_dir() / "prefix"
    if setting.strip().lower() in _OFF or not setting.strip():
        return None
    return Path(setting).expanduser()


def speed_store_path() -> Path:
    """The file of measured prefill speeds (kcode.llm.prefill)."""
    from kcode.config import cache_dir

    return cache_dir() / "prefill-speed.json"
