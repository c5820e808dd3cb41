"""llama.cpp in process (``--model PATH.gguf``): the backend, how it loads a model (placement,
context, batch sizes), its chat template, output streaming, grammars for constrained tool
calls, the prefix cache of KV states, and a vocabulary-only tokenizer.

Its settings are one dataclass, :class:`LlamaCppOptions` (defined with the configuration,
``kcode.config``, which holds it). Importing this package does not import ``llama_cpp``; the
backend does when it loads a model.
"""

from kcode.config import LlamaCppOptions
from kcode.llm.llamacpp._loader import (
    PREFILL_DEFAULTS,
    LoadedModel,
    llama_settings,
    load_llama,
    physical_cores,
)
from kcode.llm.llamacpp._model import DEFAULT_MAX_OUTPUT_TOKENS, LlamaCppModel, PrefixStatus, Sampling, StepTimings
from kcode.llm.llamacpp._prefix_cache import CacheEntry, PrefixStore, prefix_cache_dir
from kcode.llm.llamacpp._tokenizer import GgufTokenizer, default_model_tokenizer

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "PREFILL_DEFAULTS",
    "CacheEntry",
    "GgufTokenizer",
    "LlamaCppModel",
    "LlamaCppOptions",
    "LoadedModel",
    "PrefixStatus",
    "PrefixStore",
    "Sampling",
    "StepTimings",
    "default_model_tokenizer",
    "llama_settings",
    "load_llama",
    "physical_cores",
    "prefix_cache_dir",
]
