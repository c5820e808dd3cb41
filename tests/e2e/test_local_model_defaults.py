"""``kcode run`` with a local model's defaults: constrained tool calls (``--no-constrain-tools``
turns them off) and a per-step output cap whose cut the loop tells the model about."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kcode.llm import models
from kcode.session import SessionStore
from tests.conftest import write_script

# taken before tests/conftest.py points KCODE_HOME elsewhere (as tests/e2e/test_default_model.py)
_SMALL = Path(os.environ.get("KCODE_TEST_MODEL_0_5B") or str(models.model_path("qwen2.5-coder-0.5b")))

FINISH = [{"tool_calls": [{"name": "finish", "arguments": {"summary": "mul multiplies."}}]}]


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_no_constrain_tools_is_recorded_with_the_session(kcode, calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", FINISH * 2)
    plain = kcode("run", "What does calc.mul do?", "--model", f"scripted:{script}", cwd=calc_repo)
    off = kcode("run", "What does calc.mul do?", "--model", f"scripted:{script}", "--no-constrain-tools", cwd=calc_repo)
    assert plain.returncode == 0 and off.returncode == 0, plain.stderr + off.stderr
    options = {meta.task + str(i): meta.options for i, meta in enumerate(SessionStore().list())}
    assert sorted(("constrain_tools" in o, o.get("constrain_tools")) for o in options.values()) == [(False, None), (True, False)]


@pytest.mark.slow
@pytest.mark.skipif(not _SMALL.is_file(), reason="the 0.5B GGUF is not here: kcode models pull qwen2.5-coder-0.5b")
def test_a_real_answer_cut_at_the_cap_is_noted_and_the_next_step_calls_a_tool(kcode, calc_repo):
    """The 0.5B model asked for an explanation writes prose when it may (tool_calls "auto"; by
    default every step is a tool call); with a 64-token cap the step ends there, the model is
    told, and the next step (constrained) is a tool call."""
    proc = kcode("run", "Explain in detail, in several paragraphs, how a Python package is laid out.",
                 "--model", str(_SMALL), "--max-output-tokens", "64", "--max-steps", "2", "--temperature", "0",
                 "--ctx", "8192", cwd=calc_repo, timeout=600, env={"KCODE_TOOL_CALLS": "auto"})
    assert proc.returncode in (0, 3), proc.stderr[-2000:]  # finished (e.g. a finish call) or the step budget
    (meta,) = SessionStore().list()
    events = _jsonl(SessionStore().log_path(meta.session_id).read_text())
    turns = [e for e in events if e["type"] == "turn.completed"]
    assert turns[0]["output_tokens"] == 64
    notes = [e["message"]["content"] for e in events if e["type"] == "message.added" and e["message"]["role"] == "user"][1:]
    assert "cut off" in notes[0] and "limit of 64 tokens" in notes[0]
    assistant = [e["message"] for e in events if e["type"] == "message.added" and e["message"]["role"] == "assistant"]
    assert assistant[0]["tool_calls"] == [] and assistant[1]["tool_calls"], assistant
    assert assistant[1]["content"] == ""  # constrained from the first token: no prose
