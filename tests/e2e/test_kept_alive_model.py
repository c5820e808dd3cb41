"""``kcode run`` twice with the real 0.5B model and ``keep_alive``: the first run starts a
model server, the second uses it (no load; the prompt head still in its context, so the
first step evaluates only the new task), the run header says so, and ``kcode models stop``
leaves nothing running."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from kcode.llm import models
from kcode.session import SessionStore

# taken before tests/conftest.py points KCODE_HOME elsewhere (as tests/e2e/test_local_model_defaults.py)
_SMALL = Path(os.environ.get("KCODE_TEST_MODEL_0_5B") or str(models.model_path("qwen2.5-coder-0.5b")))


def _first_turn(session_id: str) -> dict:
    lines = SessionStore().log_path(session_id).read_text().splitlines()
    return next(e for e in map(json.loads, lines) if e["type"] == "turn.completed")


@pytest.mark.slow
@pytest.mark.skipif(not _SMALL.is_file(), reason="the 0.5B GGUF is not here: kcode models pull qwen2.5-coder-0.5b")
def test_the_second_run_uses_the_kept_alive_model_and_its_warm_context(kcode, calc_repo):
    # a fixed pack budget: the default one follows the measured prefill speed, so on a loaded
    # machine the two runs could pack different heads
    flags = ["--model", str(_SMALL), "--max-steps", "1", "--max-output-tokens", "8", "--temperature", "0", "--ctx", "4096",
             "--pack-budget", "600"]
    env = {"KCODE_KEEP_ALIVE": "2m"}
    first = kcode("run", "What does calc.add do?", *flags, cwd=calc_repo, env=env, timeout=600)
    second = kcode("run", "What does calc.mul do?", *flags, cwd=calc_repo, env=env, timeout=600)
    assert first.returncode in (0, 3) and second.returncode in (0, 3), first.stderr[-2000:] + second.stderr[-2000:]
    started = re.search(r"model kept-alive model server pid (\d+) on 127\.0\.0\.1:\d+ \(started now; keep_alive 120 s\)", first.stderr)
    reused = re.search(r"model kept-alive model server pid (\d+) on 127\.0\.0\.1:\d+ \(already loaded; keep_alive 120 s\)", second.stderr)
    assert started and reused and started.group(1) == reused.group(1), first.stderr[:1500] + second.stderr[:1500]
    assert "sub-agents: off (the model serves one conversation at a time" in second.stderr
    by_task = {meta.task: meta for meta in SessionStore().list()}
    cold, warm = _first_turn(by_task["What does calc.add do?"].session_id), _first_turn(by_task["What does calc.mul do?"].session_id)
    # the first run evaluates the repository part and its task (the fixed part was made ready
    # before the step); the second only its task: the head is still in the server's context
    assert cold["input_tokens"] > 100 and warm["input_tokens"] < 40, (cold, warm)
    assert warm["cached_input_tokens"] > 1000, warm
    listed = kcode("models", "ps", cwd=calc_repo)
    assert started.group(1) in listed.stdout
    assert f"(pid {started.group(1)})" in kcode("models", "stop", cwd=calc_repo).stderr
    assert "no model server is running" in kcode("models", "ps", cwd=calc_repo).stderr
