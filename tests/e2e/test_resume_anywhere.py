"""Resume from any moment, through the real ``kcode resume``: a run killed (SIGKILL) before
its first message was logged starts over from its task, and a session logged by an older
kcode (no log version, no agent ids) continues."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from kcode.agent.recovery import recover

from tests.conftest import git

V1 = Path(__file__).parent.parent / "session" / "data" / "v1-session"
SCHEMA = json.loads(resources.files("kcode.headless").joinpath("stream_json.schema.json").read_text())
TASK = "Fix the failing test"

# The real run_task, killed by SIGKILL the moment its bus delivers an event of the given type
# (the log, subscribed first, has written that event by then).
KILLED_AT = """
import os, signal, sys
from pathlib import Path
from kcode.agent.runner import run_task
from kcode.config import Config

kill_at, script, repo = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def kill(event):
    if event.type == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

run_task(sys.argv[4], Config(model=f"scripted:{script}"), repo=repo, subscribers=[kill])
"""


def _session_dir(home: Path) -> Path:
    (directory,) = (home / "data" / "sessions").iterdir()
    return directory


@pytest.mark.parametrize("moment", ["no log yet", "session.started", "environment.resolved", "context.packed", "message.added"])
def test_killed_before_the_conversation_was_logged_resumes_from_the_task(moment, kcode, calc_repo, fix_script, kcode_home):
    kill_at = "session.started" if moment == "no log yet" else moment
    proc = subprocess.run([sys.executable, "-c", KILLED_AT, kill_at, str(fix_script), str(calc_repo), TASK], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    directory = _session_dir(kcode_home)
    log = directory / "events.jsonl"
    logged = [json.loads(line)["type"] for line in log.read_text().splitlines()]
    assert logged[-1] == kill_at and logged.count("message.added") == (1 if kill_at == "message.added" else 0)
    if moment == "no log yet":  # killed between writing the meta and opening the log
        log.unlink()
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["status"] == "running" and meta["task"] == TASK
    resumed = kcode("resume", cwd=calc_repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Status: finished after 5 steps" in resumed.stdout
    assert "return a + b" in git(calc_repo, "show", f"{meta['branch']}:calc/__init__.py")
    conversation = recover(log).last.conversation()
    assert [m["role"] for m in conversation[:4]] == ["system", "system", "user", "assistant"]
    assert next(m["content"] for m in conversation if m["role"] == "user") == TASK
    assert sum(m["role"] == "system" for m in conversation) == 2  # the opening once, not twice
    assert not Path(meta["workdir"]).exists()


def test_a_session_logged_in_the_old_format_resumes_and_replays(kcode, tmp_path, kcode_home, fix_script):
    """The fixture: a run stopped by its step budget, logged before logs had a version."""
    meta = json.loads((V1 / "meta.json").read_text())
    session_id, branch = meta["session_id"], meta["branch"]
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(V1 / "repo.bundle"), str(repo)], check=True)
    git(repo, "branch", "-q", branch, f"origin/{branch}")
    git(repo, "remote", "remove", "origin")
    directory = kcode_home / "data" / "sessions" / session_id
    directory.mkdir(parents=True)
    shutil.copy(V1 / "events.jsonl", directory / "events.jsonl")
    meta.update(repo=str(repo), workdir=str(kcode_home / "data" / "worktrees" / session_id))
    (directory / "meta.json").write_text(json.dumps(meta))
    resumed = kcode("resume", session_id, "--model", f"scripted:{fix_script}", "--max-steps", "10", cwd=repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Status: finished after 5 steps" in resumed.stdout
    assert "return a + b" in git(repo, "show", f"{branch}:calc/__init__.py")
    raw = [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()]
    assert "v" not in raw[0] and raw[-1]["v"] == 2  # old lines, then this kcode's
    replay = kcode("replay", session_id, cwd=repo)
    assert replay.returncode == 0, replay.stderr
    lines = [json.loads(line) for line in replay.stdout.splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
        assert line["agent_id"] == session_id
    assert [line["type"] for line in lines].count("thread.started") == 2 and lines[-1]["subtype"] == "success"


# The same, with an opening of the caller's (run_task's ``prompt=`` seam): two messages, no pack.
CUSTOM_PROMPT = [{"role": "system", "content": "You are the caller's agent. Fix what the user asks."}, {"role": "user", "content": TASK}]
KILLED_WITH_PROMPT = KILLED_AT.replace(
    "run_task(sys.argv[4], Config(model=f\"scripted:{script}\"), repo=repo, subscribers=[kill])",
    "import json\nrun_task(sys.argv[4], Config(model=f\"scripted:{script}\"), repo=repo, subscribers=[kill], prompt=json.loads(sys.argv[5]))",
)


@pytest.mark.parametrize("kill_at", ["session.started", "message.added"])
def test_a_run_with_its_callers_prompt_resumes_with_that_prompt(kill_at, kcode, calc_repo, fix_script, kcode_home):
    """Killed before its opening was logged, or after its first message: the resume opens
    with the caller's messages, not kcode's own system prompt and repository part."""
    assert KILLED_WITH_PROMPT != KILLED_AT
    args = [sys.executable, "-c", KILLED_WITH_PROMPT, kill_at, str(fix_script), str(calc_repo), TASK, json.dumps(CUSTOM_PROMPT)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    directory = _session_dir(kcode_home)
    logged = [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()]
    assert [e["message"] for e in logged if e["type"] == "message.added"] == CUSTOM_PROMPT[: 1 if kill_at == "message.added" else 0]
    resumed = kcode("resume", cwd=calc_repo)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Status: finished after 5 steps" in resumed.stdout
    conversation = recover(directory / "events.jsonl").last.conversation()
    assert conversation[:2] == CUSTOM_PROMPT and conversation[2]["role"] == "assistant"
    assert not any(e["type"] == "context.packed" for e in (json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()))
