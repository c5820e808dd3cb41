"""llama.cpp in process (``--model PATH.gguf``): the backend, how it loads a model (placement,
context, batch sizes), its chat template, output streaming, grammars for constrained tool
calls, the prefix cache of KV states, and a vocabulary-only tokenizer.

Importing this package does not import ``llama_cpp``; the backend does when it loads a model.
"""

from kcode.llm.llamacpp._loader import (
    PREFILL_DEFAULTS,
    LoadedModel,
    Placement,
    load_llama,
    physical_cores,
)
from kcode.llm.llamacpp._model import LlamaCppModel, PrefixStatus, Sampling, StepTimings
from kcode.llm.llamacpp._prefix_cache import CacheEntry, PrefixStore
from kcode.llm.llamacpp._tokenizer import GgufTokenizer, default_model_tokenizer

__all__ = [
    "PREFILL_DEFAULTS",
    "CacheEntry",
    "GgufTokenizer",
    "LlamaCppModel",
    "LoadedModel",
    "Placement",
    "PrefixStatus",
    "PrefixStore",
    "Sampling",
    "StepTimings",
    "default_model_tokenizer",
    "load_llama",
    "physical_cores",
]
