"""The rules every sub-agent runs under, through real runs (scripted decisions, real git and
sandbox): explore cannot write, no sub-agent starts sub-agents, the parent's report is at
most 4 KB with the way to the rest, and model calls in flight back off on a 429 and recover."""

from __future__ import annotations

import threading
import time

import pytest

from kcode.agent.runner import run_task
from kcode.agent.subagents import REPORT_LIMIT, GatedModel, RateGate
from kcode.cancel import CancelToken
from kcode.errors import RateLimited
from kcode.llm.base import StepEnd
from kcode.session import SessionStore, read_event_dicts
from tests.agent.test_subagents import _child, _config, _tree
from tests.conftest import write_script


def _bwrap_usable() -> bool:
    from kcode.sandbox.probe import probe_bubblewrap

    return probe_bubblewrap().usable


def _task_turns(description: str, mode: str = "explore") -> list[dict]:
    return [{"tool_calls": [{"name": "task", "arguments": {"description": description, "prompt": "Look around.", "mode": mode}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}]


def _tool_results(store: SessionStore, session_id: str) -> list[dict]:
    return [e for e in read_event_dicts(store.log_path(session_id)) if e["type"] == "tool.finished" and e["agent_id"] == session_id]


@pytest.mark.skipif(not _bwrap_usable(), reason="bubblewrap cannot sandbox here")
def test_an_explore_subagent_cannot_write_nor_start_subagents(calc_repo, tmp_path):
    scripts = tmp_path / "children"
    scripts.mkdir()
    _child(scripts, "peek", [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "echo x > calc/new.txt; echo y >> calc/__init__.py"}}]},
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "calc/new.txt", "content": "x\n"}}]},
        {"tool_calls": [{"name": "swarm", "arguments": {"description": "more", "prompt_template": "{item}", "items": ["a"]}}]},
        {"tool_calls": [{"name": "task", "arguments": {"description": "more", "prompt": "p"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "looked"}}]}])
    parent = write_script(tmp_path / "parent.json", _task_turns("peek"))
    store = SessionStore(tmp_path / "sessions")
    before = (calc_repo / "calc" / "__init__.py").read_bytes()
    outcome = run_task("What is in calc?", _config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    (child,) = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    assert child.status == "finished"
    bash, write, swarm, task, _ = _tool_results(store, child.session_id)
    assert "Read-only file system" in bash["output"] or "Permission denied" in bash["output"], bash["output"]
    for refused, name in ((write, "write_file"), (swarm, "swarm"), (task, "task")):
        assert refused["is_error"] and f"unknown tool {name!r}".lower() in refused["output"].lower(), refused["output"]
    tree = _tree(calc_repo, outcome.workspace.head)  # the parent's branch: nothing of the sub-agent's
    assert "calc/new.txt" not in tree and tree["calc/__init__.py"].encode() == before


def test_the_parent_reads_at_most_4_kb_and_where_the_rest_is(calc_repo, tmp_path):
    scripts = tmp_path / "children"
    scripts.mkdir()
    findings = "".join(f"finding {n}: calc/__init__.py line {n} is fine. " for n in range(400))  # about 18 KB
    _child(scripts, "long", [{"tool_calls": [{"name": "finish", "arguments": {"summary": findings}}]}])
    parent = write_script(tmp_path / "parent.json", _task_turns("long"))
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("What is in calc?", _config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    (child,) = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    report = next(e for e in _tool_results(store, outcome.meta.session_id) if e["name"] == "task")["output"]
    assert len(report.encode()) <= REPORT_LIMIT == 4096
    assert report.startswith(f"sub-agent {child.session_id} (explore: long): finished after 1 steps")
    assert "finding 0:" in report and "finding 399:" not in report and " [...]" in report
    assert report.rstrip().endswith(f"full trajectory: kcode replay {child.session_id}")
    assert store.read_meta(child.session_id).summary == findings  # the whole of it stays on disk


class _Limited:
    """A model whose first ``fail`` calls answer 429, then each call takes ``seconds``."""

    name = "limited"

    def __init__(self, fail: int, seconds: float = 0.05) -> None:
        self.fail, self.seconds, self.calls, self.lock = fail, seconds, 0, threading.Lock()

    def stream(self, messages, tools, cancel=None, **kwargs):
        with self.lock:
            self.calls += 1
            limited = self.calls <= self.fail
        if limited:
            raise RateLimited("429 Too Many Requests")
        time.sleep(self.seconds)
        yield StepEnd("ok")


def test_a_429_halves_the_calls_in_flight_and_successes_let_them_back():
    gate = RateGate(8, recover_after=4)
    cancel = CancelToken()
    model = _Limited(fail=2)

    def call() -> None:
        try:
            list(GatedModel(model, gate, cancel).stream([], []))
        except RateLimited:
            pass

    for _ in range(2):  # two 429s: 8 -> 4 -> 2
        call()
    assert (gate.limit, gate.rate_limits) == (2, 2)
    in_flight: list[int] = []
    seen = threading.Lock()

    def busy() -> None:
        gate.acquire(cancel)
        with seen:
            in_flight.append(gate.in_flight)
        time.sleep(0.05)
        gate.release()

    threads = [threading.Thread(target=busy) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert max(in_flight) <= 3  # held near the lowered bound while it recovers (2, then 3 after 4 successes)
    assert gate.limit == 3
    for _ in range(4 * 8):  # slowly back up to the ceiling, never past it
        gate.acquire(cancel)
        gate.release()
    assert gate.limit == 8 and gate.in_flight == 0
