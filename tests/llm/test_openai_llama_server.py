"""The OpenAI-compatible backend against a real server on loopback: llama-cpp-python's own
OpenAI-compatible server serving the 0.5B catalog model (``kcode models pull
qwen2.5-coder-0.5b``; ``pip install 'llama-cpp-python[server]'``)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kcode.llm import models
from kcode.llm.base import StepEnd, TextChunk, ToolSpec
from kcode.llm.openai_compat import PROVIDERS, OpenAICompatModel

pytestmark = pytest.mark.slow

# Taken before tests/conftest.py points KCODE_HOME at an empty folder; .ci/run exports
# KCODE_TEST_MODEL_0_5B after `kcode models pull qwen2.5-coder-0.5b`.
_SMALL = os.environ.get("KCODE_TEST_MODEL_0_5B") or str(models.model_path("qwen2.5-coder-0.5b"))

READ_FILE = ToolSpec(
    "read_file",
    "Read a file of the repository and return its text.",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
TASK = [
    {"role": "system", "content": "You are a coding agent. Use the tools to inspect files."},
    {"role": "user", "content": "Read the file main.py."},
]


def _model_file() -> str:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("llama-cpp-python with the [server] extra is not installed")
    if not Path(_SMALL).is_file():
        pytest.skip(f"{_SMALL} is missing: run `kcode models pull qwen2.5-coder-0.5b`")
    return _SMALL


def _start(chat_format: str | None, log_path: Path) -> Iterator[str]:
    model = _model_file()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--n_threads", "2"]  # fmt: skip
    if chat_format:
        command += ["--chat_format", chat_format]
    log = log_path.open("w")  # a file, not a pipe: llama.cpp logs more than a pipe buffer holds
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up in 120 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def template_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The GGUF's own chat template: the model writes its tool call as text."""
    yield from _start(None, tmp_path_factory.mktemp("server") / "log.txt")


@pytest.fixture(scope="module")
def function_calling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's function-calling format: structured, streamed ``tool_calls``."""
    yield from _start("chatml-function-calling", tmp_path_factory.mktemp("server") / "log.txt")


def _model(url: str, **kwargs: object) -> OpenAICompatModel:
    extra = {"temperature": 0.0, "max_tokens": 80, "seed": 1}
    return OpenAICompatModel(PROVIDERS["openai"], "qwen", base_url=url, extra_body=extra, **kwargs)  # type: ignore[arg-type]


def test_streamed_answer_with_a_tool_spec_is_parsed(template_server: str) -> None:
    model = _model(template_server, session_id="s1")
    chunks = list(model.stream(TASK, [READ_FILE]))
    end = chunks[-1]
    assert isinstance(end, StepEnd)
    assert sum(isinstance(c, TextChunk) for c in chunks) > 1  # really streamed, token by token
    assert end.usage.input_tokens > 20 and end.usage.output_tokens > 0
    # the 0.5B model asks to read the file; its text-form call is parsed and validated
    assert [(c.name, c.error) for c in end.tool_calls] == [("read_file", None)]
    assert end.tool_calls[0].arguments["path"].endswith("main.py")
    model.close()


def test_history_with_reasoning_and_tool_results_is_accepted(template_server: str) -> None:
    history = TASK + [
        {"role": "assistant", "content": "", "reasoning": "",
         "tool_calls": [{"id": "call_1", "name": "read_file", "arguments": {"path": "main.py"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "read_file", "content": "print('hi')\n"},
        {"role": "user", "content": "What does main.py print? Answer in one word."},
    ]  # fmt: skip
    end = list(_model(template_server).stream(history, [READ_FILE]))[-1]
    assert isinstance(end, StepEnd) and (end.content or end.tool_calls)


def test_structured_streamed_tool_calls(function_calling_server: str) -> None:
    forced = {"type": "function", "function": {"name": "read_file"}}
    end = list(_model(function_calling_server, tool_choice=forced).stream(TASK, [READ_FILE]))[-1]
    assert isinstance(end, StepEnd)
    (call,) = end.tool_calls
    assert call.name == "read_file" and call.error is None and isinstance(call.arguments.get("path"), str)
    assert call.id  # the server's id is kept for the tool result
