"""Sub-agents as Ray tasks on a local Ray (slow: Ray starts in seconds, and runs in CI): the
repository goes out as a bundle, the branch comes back as one and is merged like a local
sub-agent's; a task whose worker dies is run again by Ray and resumes from the sub-agent's
log, so no logged step, and none of its side effects, happens twice."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from kcode.agent.runner import run_task
from kcode.session import SessionStore, read_event_dicts
from tests.agent.test_subagents import _child, _config, _swarm_turns, _tree
from tests.conftest import git, write_script


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    # the workers import this checkout's kcode, as the test does
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def _ray_config(repo: Path, parent: Path, scripts: Path):
    return _config(repo, parent, scripts, executor="ray", sandbox="off")


@pytest.mark.slow
def test_edit_subagents_run_as_ray_tasks_and_merge(local_ray, calc_repo, tmp_path):
    items = ["r1", "r2", "r3"]
    where = tmp_path / "where.py"  # which process runs the sub-agent: a Ray worker, or this one
    where.write_text("import os, psutil\nprint(any(p.name().startswith('ray::') for p in psutil.Process().parents()), os.getppid())\n")
    scripts = tmp_path / "children"
    scripts.mkdir()
    for i, item in enumerate(items):
        _child(scripts, f"gen [{i + 1}/3] {item}", [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"{sys.executable} {where} > {tmp_path}/where-{item}"}}]},
            {"tool_calls": [{"name": "write_file", "arguments": {"path": f"gen/{item}.txt", "content": f"{item}\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": f"wrote {item}"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, max_parallel=3))
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Generate three files", _ray_config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    assert outcome.result.status == "finished", outcome.result.summary
    expected = _tree(calc_repo, "main")
    expected.update({f"gen/{item}.txt": f"{item}\n" for item in items})
    assert _tree(calc_repo, outcome.workspace.head) == expected
    # they ran in Ray's worker processes, not in this one
    for item in items:
        in_ray, runner = (tmp_path / f"where-{item}").read_text().split()
        assert in_ray == "True" and int(runner) != os.getpid()
    children = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    assert len(children) == 3 and all(m.status == "finished" for m in children)
    for meta in children:  # each session's log came back, and its branch is in the repository
        types = [e["type"] for e in read_event_dicts(store.log_path(meta.session_id))]
        assert types[0] == "session.started" and types[-1] == "session.finished"
        assert git(calc_repo, "rev-parse", "--verify", meta.branch).strip()
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    assert {e["agent_id"] for e in events if e.get("parent_id") == outcome.meta.session_id} == {m.session_id for m in children}
    report = next(e for e in events if e["type"] == "tool.finished" and e["name"] == "swarm")["output"]
    assert "3 merged, 0 conflicts" in report
    assert git(calc_repo, "worktree", "list").strip().count("\n") == 0


KILLER = textwrap.dedent("""\
    import os, signal, sys
    import psutil
    marker = sys.argv[1]
    if os.path.exists(marker):
        sys.exit(0)
    open(marker, "w").close()
    for process in psutil.Process().parents():  # the Ray worker running this sub-agent
        if process.name().startswith("ray::") or "default_worker" in " ".join(process.cmdline()):
            os.kill(process.pid, signal.SIGKILL)
            break
    """)


@pytest.mark.slow
def test_a_task_whose_worker_dies_resumes_from_the_log_and_repeats_no_side_effect(local_ray, calc_repo, tmp_path):
    killer = tmp_path / "kill_my_worker.py"
    killer.write_text(KILLER)
    side = tmp_path / "side-effects"
    scripts = tmp_path / "children"
    scripts.mkdir()
    _child(scripts, "gen [1/1] once", [
        {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo step1 >> {side}"}}]},
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "gen/once.txt", "content": "once\n"}}]},
        {"tool_calls": [{"name": "bash", "arguments": {"command": f"{sys.executable} {killer} {tmp_path}/killed"}}]},
        {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo step4 >> {side}"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "done once"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(["once"], max_parallel=1))
    store = SessionStore(tmp_path / "sessions")
    outcome = run_task("Once", _ray_config(calc_repo, parent, scripts), repo=calc_repo, store=store)
    assert outcome.result.status == "finished", outcome.result.summary
    assert (tmp_path / "killed").exists()  # the first try's worker was killed in step 3
    assert side.read_text().splitlines() == ["step1", "step4"]  # steps 1 and 4 ran once each
    (child,) = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    events = list(read_event_dicts(store.log_path(child.session_id)))
    starts = [e for e in events if e["type"] == "session.started"]
    assert [bool(e.get("resumed")) for e in starts] == [False, True]  # one session, resumed once
    assert [e["step"] for e in events if e["type"] == "turn.completed"] == [1, 2, 3, 4, 5]
    assert _tree(calc_repo, outcome.workspace.head)["gen/once.txt"] == "once\n"  # the first try's edit, merged
    events = list(read_event_dicts(store.log_path(outcome.meta.session_id)))
    assert "1 merged, 0 conflicts" in next(e for e in events if e["type"] == "tool.finished" and e["name"] == "swarm")["output"]


def test_an_unknown_executor_is_a_clear_error(calc_repo, tmp_path):
    from kcode.errors import UsageError

    parent = write_script(tmp_path / "parent.json", _swarm_turns(["x"]))
    with pytest.raises(UsageError, match="sub-agents run on local or ray"):
        run_task("x", _config(calc_repo, parent, tmp_path, executor="k8s"), repo=calc_repo, store=SessionStore(tmp_path / "s"))


@pytest.mark.slow
def test_an_interrupt_stops_the_ray_tasks(local_ray, calc_repo, tmp_path):
    import threading
    import time

    from kcode.cancel import CancelToken

    items = ["z1", "z2"]
    scripts = tmp_path / "children"
    scripts.mkdir()
    for i, item in enumerate(items):
        _child(scripts, f"gen [{i + 1}/2] {item}", [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"touch {tmp_path}/asleep-{item}; sleep 120; touch {tmp_path}/woke-{item}"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": "slept"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, max_parallel=2))
    store = SessionStore(tmp_path / "sessions")
    cancel = CancelToken()
    started = time.monotonic()

    def cancel_when_both_sleep():
        while time.monotonic() - started < 90 and not all((tmp_path / f"asleep-{item}").exists() for item in items):
            time.sleep(0.2)
        cancel.cancel()

    threading.Thread(target=cancel_when_both_sleep, daemon=True).start()
    outcome = run_task("Sleep", _ray_config(calc_repo, parent, scripts), repo=calc_repo, store=store, cancel=cancel)
    took = time.monotonic() - started
    assert outcome.result.status == "interrupted"
    print(f"interrupted after {took:.1f} s")
    assert all((tmp_path / f"asleep-{item}").exists() for item in items) and took < 110, took
    children = [m for m in store.list() if m.parent_id == outcome.meta.session_id]
    assert len(children) == 2 and all(m.status == "interrupted" for m in children)  # stopped, their logs kept
    time.sleep(1)
    assert not any((tmp_path / f"woke-{item}").exists() for item in items)  # their commands were killed
