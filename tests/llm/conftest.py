"""Fixtures for the model-layer tests: tiny random-weight GGUF models made by the suite and
the real 0.5B Qwen model when it is on this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

QWEN_0_5B_CANDIDATES = (
    Path("/root/.cache/kcode-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    Path.home() / ".cache/kcode/models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
)


@pytest.fixture(scope="session")
def tiny_llama_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from kcode.llm.models import write_tiny_llama_moe

    return write_tiny_llama_moe(tmp_path_factory.mktemp("gguf") / "tiny-llama-moe.gguf")


@pytest.fixture(scope="session")
def tiny_deepseek2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gguf")
    from kcode.llm.models import write_tiny_deepseek2

    return write_tiny_deepseek2(tmp_path_factory.mktemp("gguf") / "tiny-deepseek2.gguf")


@pytest.fixture(scope="session")
def qwen_0_5b() -> Path:
    """The real Qwen2.5-Coder-0.5B-Instruct Q4_K_M file (env KCODE_TEST_MODEL_0_5B or cache)."""
    pytest.importorskip("llama_cpp")
    env = os.environ.get("KCODE_TEST_MODEL_0_5B")
    candidates = [Path(env)] if env else list(QWEN_0_5B_CANDIDATES)
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip("the 0.5B Qwen GGUF is not on this machine: set KCODE_TEST_MODEL_0_5B or run "
                "`kcode models pull qwen2.5-coder-0.5b`")


# A scripted HTTP server on loopback (tests/llm/test_openai_faults.py), and no API keys from
# the developer's environment in any model-layer test.

@pytest.fixture
def server() -> Iterator[object]:
    from tests.llm.test_openai_faults import Server

    instance = Server()
    yield instance
    instance.close()


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KCODE_API_KEY", "OPENAI_API_KEY", "MOONSHOT_API_KEY", "OPENROUTER_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
