"""Crash safety: ``kcode run`` killed with SIGKILL at random moments, then ``kcode resume``d,
ends in exactly the state of an uninterrupted run — nothing lost, nothing done twice. The
state is the work branch's: a run that ends removes its work tree and leaves nothing else."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kcode.session import read_event_dicts

from tests.conftest import git, write_script

STEPS = 40
RUNS = 20


def _tail_after_last_completed(log: Path) -> list[dict]:
    events = list(read_event_dicts(log))
    last = max((i for i, e in enumerate(events) if e["type"] == "turn.completed"), default=-1)
    return events[last + 1 :]


def _turns() -> list[dict]:
    turns = []
    for n in range(STEPS):
        if n % 4 == 3:  # a slow tool call, so kills land in the middle of tool calls too
            command = f"echo step-{n} >> journal.txt; sleep 0.15; mkdir -p out; echo {n} > out/f{n:02d}.txt"
            turns.append({"tool_calls": [{"name": "bash", "arguments": {"command": command}}]})
        elif n % 4 == 1:
            turns.append({"tool_calls": [{"name": "write_file", "arguments": {"path": f"out/w{n:02d}.txt", "content": f"written at step {n}\n"}}]})
        else:
            turns.append({"tool_calls": [{"name": "bash", "arguments": {"command": f"echo step-{n} >> journal.txt; mkdir -p out; echo {n} > out/f{n:02d}.txt"}}]})
    turns.append({"tool_calls": [{"name": "finish", "arguments": {"summary": "all steps done"}}]})
    return turns


def _tree(repo: Path, branch: str) -> dict[str, str]:
    """The files on ``branch`` (what the run's checkpoints hold)."""
    names = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    return {name: git(repo, "show", f"{branch}:{name}") for name in sorted(names)}


def _nothing_left_behind(repo: Path, workdir: Path) -> None:
    """The run's work tree is gone, and git no longer lists it."""
    assert not workdir.exists()
    assert [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")] == [f"worktree {repo}"]


def _completed_steps(log: Path) -> list[int]:
    """Steps completed in the session's current history (abandoned tails excluded)."""
    steps: list[int] = []
    for event in read_event_dicts(log):
        if event["type"] == "turn.completed":
            steps = [s for s in steps if s < event["step"]] + [event["step"]]
    return steps


def _kcode(home: Path, *args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "KCODE_HOME": str(home), "NO_COLOR": "1"}
    return subprocess.Popen([shutil.which("kcode"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _session(home: Path) -> tuple[Path, str, Path]:
    sessions = list((home / "data" / "sessions").iterdir())
    assert len(sessions) == 1
    meta = json.loads((sessions[0] / "meta.json").read_text())
    return Path(meta["workdir"]), meta["branch"], sessions[0] / "events.jsonl"


def _kill_when(proc: subprocess.Popen, moment, seconds: float) -> bool:
    """SIGKILL ``proc`` as soon as ``moment()`` is true (polled every 5 ms); False when the
    run ended, or ``seconds`` passed, first."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        if moment():
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return True
        time.sleep(0.005)
    proc.communicate(timeout=30)
    return False


def _resume_to_the_reference(home: Path, repo: Path, reference: dict) -> None:
    """``kcode resume`` the killed session: it finishes in the uninterrupted run's state, and
    leaves nothing behind."""
    workdir, branch, log = _session(home)
    resumed = _kcode(home, "resume", cwd=repo)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert _tree(repo, branch) == reference["tree"]
    assert _completed_steps(log) == reference["steps"]
    _nothing_left_behind(repo, workdir)


def _repo(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("kill -9 test\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("reference")
    script = write_script(base / "script.json", _turns())
    home = base / "home"
    started = time.monotonic()
    repo = _repo(base)
    proc = _kcode(home, "run", "write the files", "--model", f"scripted:{script}", "--pack", "none", cwd=repo)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    workdir, branch, log = _session(home)
    _nothing_left_behind(repo, workdir)
    return {"tree": _tree(repo, branch), "steps": _completed_steps(log), "duration": time.monotonic() - started, "script": script}


def test_reference_run_is_complete(reference):
    tree = reference["tree"]
    assert tree["journal.txt"] == "".join(f"step-{n}\n" for n in range(STEPS) if n % 4 != 1)
    assert reference["steps"] == list(range(1, STEPS + 2))


@pytest.mark.parametrize("run", range(RUNS))
def test_killed_and_resumed_equals_uninterrupted(run, reference, tmp_path):
    rng = random.Random(1000 + run)
    home = tmp_path / "home"
    repo = _repo(tmp_path)
    proc = _kcode(home, "run", "write the files", "--model", f"scripted:{reference['script']}", "--pack", "none", cwd=repo)
    # the moment counts from the session's creation (any later moment resumes, the very next
    # one included), so a slow start on a loaded machine cannot make it land before it
    sessions = home / "data" / "sessions"
    created = {}

    def later() -> bool:  # a random moment after the session's meta was written
        if "at" not in created and any(sessions.glob("*/meta.json")):
            created["at"] = time.monotonic() + rng.uniform(0.0, reference["duration"] * 0.9)
        return time.monotonic() >= created.get("at", float("inf"))

    _kill_when(proc, later, 120 + reference["duration"])
    assert sessions.exists(), "killed before the session was created: kill later"
    workdir, branch, log = _session(home)
    finished = [e for e in read_event_dicts(log) if e["type"] == "session.finished"] if log.exists() else []
    if finished and finished[-1]["status"] == "finished":  # the run had ended
        if workdir.exists():  # killed between its last event and removing the work tree
            assert git(workdir, "status", "--porcelain") == ""
        assert _tree(repo, branch) == reference["tree"]
        assert _completed_steps(log) == reference["steps"]
    else:  # killed before the run ended (or it ended by itself before the moment came)
        _resume_to_the_reference(home, repo, reference)


def _events_so_far(log: Path) -> list[dict]:
    """The complete lines of a log that is still being written."""
    text = log.read_text() if log.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def test_killed_in_the_middle_of_a_tool_call_resumes_to_the_same_state(reference, tmp_path):
    """SIGKILL while a slow tool call runs (after tool.started, before its turn completed)."""
    home = tmp_path / "home"
    repo = _repo(tmp_path)
    proc = _kcode(home, "run", "write the files", "--model", f"scripted:{reference['script']}", "--pack", "none", cwd=repo)
    sessions = home / "data" / "sessions"

    def in_a_slow_call() -> bool:  # the slow call of step 12 or later: some checkpoints exist by then
        logs = list(sessions.glob("*/events.jsonl")) if sessions.exists() else []
        events = _events_so_far(logs[0]) if logs else []
        last = events[-1] if events else {}
        return last.get("type") == "tool.started" and last.get("step", 0) >= 12 and "sleep" in json.dumps(last.get("arguments"))

    assert _kill_when(proc, in_a_slow_call, 240), "the run ended (or timed out) before a slow tool call was seen running"
    workdir, branch, log = _session(home)
    assert any(e["type"] == "tool.started" for e in _tail_after_last_completed(log)), "killed between two steps"
    assert workdir.exists()  # a killed run leaves its work tree, with the cut-short step's effects
    _resume_to_the_reference(home, repo, reference)


@pytest.mark.parametrize("cut", [0.35, 0.6, 0.85])
def test_log_cut_mid_line_resumes_to_the_same_state(cut, reference, tmp_path):
    """A crash in the middle of writing the log: the last line is half there, and git has
    checkpoints the log does not know about yet."""
    home = tmp_path / "home"
    repo = _repo(tmp_path)
    proc = _kcode(home, "run", "write the files", "--model", f"scripted:{reference['script']}", "--pack", "none", cwd=repo)
    assert proc.wait(timeout=300) == 0
    workdir, branch, log = _session(home)
    data = log.read_bytes()
    position = int(len(data) * cut)
    while data[position - 1 : position] == b"\n":  # the cut must fall inside a line, not just after one
        position += 1
    log.write_bytes(data[:position])  # ends inside a line
    assert not log.read_bytes().endswith(b"\n")
    _resume_to_the_reference(home, repo, reference)
    for line in log.read_text().splitlines():  # the half line was cut off, not glued to the next event
        json.loads(line)
