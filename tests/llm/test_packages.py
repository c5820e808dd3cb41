"""``kcode.llm`` by concept: each package's public API is its ``__all__``, and the modules
that moved into a package are gone from their old paths."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["kcode.llm", "kcode.llm.llamacpp", "kcode.llm.models", "kcode.llm.gguf"]
MOVED = ["catalog", "tinymodels", "plan", "grammar", "tokenizer", "_gguf_info", "_offload",
         "_hub", "_pypi_parts", "_progress", "_prefix_cache", "_chat_template", "_streaming", "_loader"]


@pytest.mark.parametrize("name", PACKAGES)
def test_a_package_exports_exactly_its_all(name):
    package = importlib.import_module(name)
    public = {key for key, value in vars(package).items() if not key.startswith("_") and not inspect.ismodule(value)}
    assert sorted(package.__all__) == sorted(public)
    assert len(set(package.__all__)) == len(package.__all__)


@pytest.mark.parametrize("old", MOVED)
def test_moved_modules_left_nothing_behind(old):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"kcode.llm.{old}")
