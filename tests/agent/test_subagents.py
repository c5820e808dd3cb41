"""Sub-agents through a real run: scripted decisions, real git work trees, real merges."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from kcode.agent.runner import run_task
from kcode.cancel import CancelToken
from kcode.config import load_config
from kcode.session import SessionStore, read_event_dicts
from tests.conftest import git, write_script


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def _config(repo: Path, parent_script: Path, scripts: Path, **extra):
    return load_config(repo, {"model": f"scripted:{parent_script}", "subagents": "on", "subagent_model": f"scripted:{scripts}",
                              "auto_test": False, **extra})


def _swarm_turns(items, mode="edit", max_parallel=4, description="gen"):
    return [
        {"tool_calls": [{"name": "swarm", "arguments": {"description": description, "prompt_template": "Write the file for {item}.",
                                                          "items": items, "mode": mode, "max_parallel": max_parallel}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "all done"}}]},
    ]


def _child(scripts: Path, description: str, turns: list[dict]) -> None:
    write_script(scripts / f"{_slug(description)}.json", turns)


def _tree(repo: Path, commit: str) -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", commit).split()
    return {name: git(repo, "show", f"{commit}:{name}") for name in names}


def test_twenty_edit_subagents_on_disjoint_files_merge_cleanly(calc_repo, tmp_path):
    items = [f"f{i:02d}" for i in range(20)]
    scripts = tmp_path / "children"
    scripts.mkdir()
    for i, item in enumerate(items):
        _child(scripts, f"gen [{i + 1}/20] {item}", [
            {"tool_calls": [{"name": "write_file", "arguments": {"path": f"gen/{item}.txt", "content": f"content of {item}\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": f"wrote gen/{item}.txt"}}]},
        ])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items))
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Generate twenty files", _config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    assert outcome.result.status == "finished", outcome.result.summary
    expected = _tree(calc_repo, "main")
    expected.update({f"gen/{item}.txt": f"content of {item}\n" for item in items})
    assert _tree(calc_repo, outcome.workspace.head) == expected  # byte-identical
    # every sub-agent is its own session, its parent recorded, its branch kept
    children = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    assert len(children) == 20 and all(m.status == "finished" for m in children)
    for meta in children:
        assert git(calc_repo, "rev-parse", "--verify", meta.branch).strip()
    # the parent's log carries the sub-agents' events, tagged with their ids
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    tagged = {e["agent_id"] for e in events if e.get("parent_id") == outcome.meta.session_id}
    assert tagged == {m.session_id for m in children}
    report = next(e for e in events if e["type"] == "tool.finished" and e["name"] == "swarm")["output"]
    assert report.startswith("swarm gen: 20 sub-agents, 20 finished; 20 merged, 0 conflicts")
    assert len(report.encode()) <= 16384
    # no work tree is left behind
    assert git(calc_repo, "worktree", "list").strip().count("\n") == 0


def test_overlapping_edits_are_a_conflict_and_both_sides_are_kept(calc_repo, tmp_path):
    scripts = tmp_path / "children"
    scripts.mkdir()
    items = ["plus", "minus-one"]
    _child(scripts, "fix [1/2] plus", [
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a + b"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "plus"}}]}])
    _child(scripts, "fix [2/2] minus-one", [
        {"tool_calls": [{"name": "edit_file", "arguments": {"path": "calc/__init__.py", "old": "return a - b", "new": "return a - b - 1"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "minus one"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, max_parallel=2, description="fix"))  # both start from the same commit
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Fix add", _config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    assert outcome.result.status == "finished"
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    report = next(e for e in events if e["type"] == "tool.finished" and e["name"] == "swarm")["output"]
    assert "1 merged, 1 conflicts" in report and "CONFLICT: not merged" in report and "calc/__init__.py" in report
    # whichever finished first is merged; the other's work is kept on its branch
    versions = {"plus": "    return a + b\n", "minus": "    return a - b - 1\n"}
    merged = git(calc_repo, "show", f"{outcome.workspace.head}:calc/__init__.py")
    winner = next(name for name, line in versions.items() if line in merged)
    loser = next(m for m in store.list() if m.parent_id and winner not in m.task.split("Your task (")[1])
    kept = git(calc_repo, "show", f"{loser.branch}:calc/__init__.py")
    assert versions["minus" if winner == "plus" else "plus"] in kept


def test_the_301st_subagent_is_refused(calc_repo, tmp_path):
    scripts = tmp_path / "children"
    scripts.mkdir()
    parent = write_script(tmp_path / "parent.json", _swarm_turns([f"i{n}" for n in range(301)], mode="explore"))
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Too many", _config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    result = next(e for e in events if e["type"] == "tool.finished" and e["name"] == "swarm")
    assert result["is_error"] and "301 items, but this run may start only 300 more sub-agents (at most 300)" in result["output"]
    assert not [m for m in store.list() if m.parent_id]


def test_past_the_limit_a_task_call_is_refused_with_a_clear_error(calc_repo, tmp_path):
    """max_subagents 2: the third `task` call of the run is refused, and says why."""
    scripts = tmp_path / "children"
    scripts.mkdir()
    for name in ("one", "two", "three"):
        _child(scripts, name, [{"tool_calls": [{"name": "finish", "arguments": {"summary": f"looked at {name}"}}]}])
    calls = [{"tool_calls": [{"name": "task", "arguments": {"description": name, "prompt": f"Look at {name}."}}]} for name in ("one", "two", "three")]
    parent = write_script(tmp_path / "parent.json", [*calls, {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}])
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Three looks", _config(calc_repo, parent, scripts, max_subagents=2), repo=calc_repo, store=store)
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    results = [e for e in events if e["type"] == "tool.finished" and e["name"] == "task"]
    assert [r["is_error"] for r in results] == [False, False, True]
    assert "sub-agent limit reached: this run may start at most 2 sub-agents (2 started)" in results[2]["output"]
    assert len([m for m in store.list() if m.parent_id]) == 2


def test_limits_steps_and_agents_lower(calc_repo, tmp_path):
    from kcode.agent.subagents import SubagentLimits, SubagentRefused, SubagentSpec, Subagents

    store = SessionStore(tmp_path / "s")
    sub = Subagents.__new__(Subagents)  # only the budget: no run needed
    sub.limits, sub.started, sub.steps_used, sub._reserved = SubagentLimits(max_agents=2, max_steps=50, agent_steps=30), 0, 0, 0
    sub._lock = threading.RLock()
    assert sub._reserve(SubagentSpec("a", "p"), fresh=True) == 30
    assert sub._reserve(SubagentSpec("b", "p"), fresh=True) == 20  # what is left of the 50
    with pytest.raises(SubagentRefused, match="at most 2 sub-agents"):
        sub._reserve(SubagentSpec("c", "p"), fresh=True)
    del store


def test_per_subagent_time_and_token_caps(calc_repo, tmp_path):
    """subagent_time and subagent_tokens cap each sub-agent (its run's max_time, max_tokens)."""
    scripts = tmp_path / "children"
    scripts.mkdir()
    _child(scripts, "capped [1/1] x", [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 8"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "should not get here"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(["x"], mode="explore", description="capped"))
    for caps, expected in (({"subagent_time": 1.0}, "time budget exhausted (1 seconds), in step 1"),
                           ({"subagent_tokens": 50}, "tokens budget exhausted")):
        store = SessionStore(tmp_path / f"sessions-{len(caps)}-{next(iter(caps))}")
        outcome = run_task("What is in x?", _config(calc_repo, parent, scripts, **caps), repo=calc_repo, store=store)
        assert outcome.result.status == "finished", outcome.result.summary
        (child,) = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
        assert child.status == "budget_exhausted" and expected in child.summary, (caps, child.summary)
        if "subagent_time" in caps:
            (bash,) = [e for e in read_event_dicts(store.log_path(child.session_id)) if e["type"] == "tool.finished"]
            # its command was stopped at the cap, not run out
            assert "[cancelled; the process group was killed]" in bash["output"] and bash["duration_ms"] < 7000
        else:
            assert child.steps == 1  # its first step's tokens spent the cap: no second step


def test_an_interrupt_stops_them_all(calc_repo, tmp_path):
    scripts = tmp_path / "children"
    scripts.mkdir()
    items = [f"s{i}" for i in range(4)]
    for i, item in enumerate(items):
        _child(scripts, f"sleepers [{i + 1}/4] {item}", [
            {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 60"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "slept"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, mode="explore", description="sleepers"))
    store = SessionStore(tmp_path / "sessions")
    cancel = CancelToken()
    started = time.monotonic()

    def cancel_when_all_sleep():
        while time.monotonic() - started < 60:
            kids = [m for m in store.list() if m.parent_id]
            # a sub-agent's meta comes before its log: no log yet is not started yet
            logs = [store.log_path(m.session_id) for m in kids]
            if len(kids) == 4 and all(log.exists() and any(e.get("type") == "tool.started" for e in read_event_dicts(log)) for log in logs):
                break
            time.sleep(0.2)
        cancel.cancel()

    threading.Thread(target=cancel_when_all_sleep, daemon=True).start()
    outcome = run_task("Sleep", _config(calc_repo, parent, scripts), repo=calc_repo, store=store, cancel=cancel)
    took = time.monotonic() - started
    assert outcome.result.status == "interrupted", (outcome.result.status, outcome.result.summary, outcome.result.last_message)
    assert took < 45, took  # nobody slept their 60 s
    kids = [m for m in store.list() if m.parent_id]
    assert len(kids) == 4 and all(store.read_meta(m.session_id).status == "interrupted" for m in kids)


def test_kill9_of_the_parent_mid_swarm_then_resume_runs_no_subagent_twice(calc_repo, tmp_path, kcode, kcode_home):
    """`kcode run` with a swarm of six edit sub-agents, two at a time; SIGKILL once two have
    finished; `kcode resume`: the finished ones are not run again, the rest finish, and the
    tree holds all six files."""
    import os
    import shutil
    import signal
    import subprocess

    items = [f"k{i}" for i in range(6)]
    scripts = tmp_path / "children"
    scripts.mkdir()
    for i, item in enumerate(items):
        _child(scripts, f"gen [{i + 1}/6] {item}", [
            {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 1.5"}}]},
            {"tool_calls": [{"name": "write_file", "arguments": {"path": f"gen/{item}.txt", "content": f"{item}\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": f"wrote {item}"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, max_parallel=2))
    env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1", "KCODE_SUBAGENTS": "on", "KCODE_SUBAGENT_MODEL": f"scripted:{scripts}",
           "KCODE_AUTO_TEST": "false"}
    proc = subprocess.Popen([shutil.which("kcode"), "run", "Generate six files", "--model", f"scripted:{parent}"], cwd=calc_repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sessions = kcode_home / "data" / "sessions"
    deadline = time.monotonic() + 120

    def finished_children() -> list[str]:
        done = []
        for registry in sessions.glob("*/subagents.json"):
            try:
                data = json.loads(registry.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            done += [e["session_id"] for e in data.values() if e.get("status") == "finished"]
        return done

    while len(finished_children()) < 2:
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = set(finished_children())
    store = SessionStore(sessions)
    parent_meta = next(m for m in store.list() if not m.parent_id)
    resumed = kcode("resume", parent_meta.session_id, cwd=calc_repo, env={"KCODE_SUBAGENTS": "on", "KCODE_SUBAGENT_MODEL": f"scripted:{scripts}",
                                                                          "KCODE_AUTO_TEST": "false"}, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    children = [m for m in store.list() if m.parent_id == parent_meta.session_id]
    # one session per item: nobody started again from scratch
    assert sorted(m.task.split("Your task (")[1].split("):")[0] for m in children) == sorted(f"gen [{i + 1}/6] {item}" for i, item in enumerate(items))
    for meta in children:
        events = [e for e in read_event_dicts(store.log_path(meta.session_id)) if e["agent_id"] == meta.session_id]
        starts = [e for e in events if e["type"] == "session.started"]
        # a finished one was not started again; one cut short was resumed once, not rerun (one
        # killed before its first event was logged has only the resumed start)
        flags = [bool(e.get("resumed")) for e in starts]
        assert flags == [False] if meta.session_id in before else flags in ([False], [True], [False, True]), (meta.session_id in before, flags)
        steps = [e["step"] for e in events if e["type"] == "turn.completed"]
        assert steps == sorted(set(steps)), f"{meta.session_id} took a logged step again: {steps}"
        assert store.read_meta(meta.session_id).status == "finished"
    head = store.read_meta(parent_meta.session_id)
    final = _tree(calc_repo, git(calc_repo, "rev-parse", head.branch).strip())
    assert {name: final[name] for name in final if name.startswith("gen/")} == {f"gen/{item}.txt": f"{item}\n" for item in items}


def test_an_in_process_model_serves_its_subagents_one_at_a_time():
    """A model that serves one conversation at a time (the in-process llama.cpp one) runs its
    sub-agents in turn; a server's run them side by side."""
    from kcode.agent.subagents import SubagentLimits, SubagentSpec, Subagents
    from kcode.llm.llamacpp import LlamaCppModel

    assert LlamaCppModel.serves_one_at_a_time is True
    specs = [SubagentSpec(f"s{i}", "p") for i in range(4)]
    for serial, expect_main in ((True, True), (False, False)):
        sub = Subagents.__new__(Subagents)
        sub.serial, sub.limits, sub._lock, sub._quiet = serial, SubagentLimits(max_parallel=4), threading.RLock(), 0
        sub.run = lambda spec: (time.sleep(0.05), threading.current_thread().name)[1]
        names = sub.run_many(specs, 4)
        assert all(n == threading.current_thread().name for n in names) is expect_main
