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


def test_a_ray_that_cannot_start_is_tried_once_and_every_subagent_gets_its_error(monkeypatch, tmp_path):
    import threading
    from types import SimpleNamespace

    import kcode.executor
    from kcode.agent.remote_parent import _executor
    from kcode.agent.subagents import SubagentLimits
    from kcode.errors import KcodeError

    tries = []

    def failing(spec, workers, retries=0):
        tries.append(spec)
        raise KcodeError("could not start a local Ray: timed out waiting for the raylet")

    monkeypatch.setattr(kcode.executor, "create_executor", failing)
    sub = SimpleNamespace(_lock=threading.RLock(), _executor=None, _executor_error=None, _keeper=None, limits=SubagentLimits(),
                          config=SimpleNamespace(executor="ray"), store=SessionStore(tmp_path / "s"), meta=SimpleNamespace(session_id="p"))
    for _ in range(3):
        with pytest.raises(KcodeError, match="could not start a local Ray: timed out waiting for the raylet"):
            _executor(sub)
    assert tries == ["ray"]


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


def _ray_processes_of(session_dir: Path) -> list[int]:
    """The Ray processes (head, raylet, workers) whose session is ``session_dir``'s, alive."""
    import psutil

    alive = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(session_dir) in " ".join(process.info["cmdline"] or []):
                alive.append(process.pid)
        except psutil.Error:
            continue
    return alive


@pytest.mark.slow
def test_kill9_of_the_parent_mid_ray_swarm_then_resume_runs_no_subagent_twice(calc_repo, tmp_path, kcode, kcode_home):
    """`kcode run --executor ray` (its own local Ray) with six edit sub-agents, two at a time;
    SIGKILL of the parent once two have finished and the two in flight are in their second
    step; `kcode resume`: the finished ones are not run again, the two cut short resume from
    the logs the keeper kept (their first step's side effect is not repeated), the rest run,
    and the tree holds all six files."""
    import json
    import shutil
    import signal
    import subprocess
    import tempfile
    import time

    pytest.importorskip("ray")
    items = [f"k{i}" for i in range(6)]
    side = tmp_path / "side"
    side.mkdir()
    scripts = tmp_path / "children"
    scripts.mkdir()
    for i, item in enumerate(items):
        _child(scripts, f"gen [{i + 1}/6] {item}", [
            {"tool_calls": [{"name": "bash", "arguments": {"command": f"echo once >> {side}/{item}"}}]},
            {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 4"}}]},
            {"tool_calls": [{"name": "write_file", "arguments": {"path": f"gen/{item}.txt", "content": f"{item}\n"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"summary": f"wrote {item}"}}]}])
    parent = write_script(tmp_path / "parent.json", _swarm_turns(items, max_parallel=2))
    # this run's Ray, its processes found by this folder (a short path: Ray's sockets live in it)
    ray_tmp = Path(tempfile.mkdtemp(prefix="kray-", dir="/tmp"))
    env = {"KCODE_SUBAGENTS": "on", "KCODE_SUBAGENT_MODEL": f"scripted:{scripts}", "KCODE_AUTO_TEST": "false",
           "KCODE_SANDBOX": "off", "KCODE_EXECUTOR": "ray", "RAY_TMPDIR": str(ray_tmp)}
    full_env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1", **env}
    full_env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([shutil.which("kcode"), "run", "Generate six files", "--model", f"scripted:{parent}"], cwd=calc_repo,
                            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sessions = kcode_home / "data" / "sessions"

    def state() -> tuple[set[str], int]:
        """The finished sub-agents' keys (the parent's registry), and how many of the others
        have logged their first step but not their second (the keeper's copies)."""
        finished, sleeping = set(), 0
        for registry in sessions.glob("*/subagents.json"):
            try:
                finished |= {k for k, e in json.loads(registry.read_text()).items() if e.get("status") == "finished"}
            except (OSError, json.JSONDecodeError):
                continue
        for log in sessions.glob("*/remote/*/events.jsonl"):
            if log.parent.name in finished:
                continue
            steps = [e.get("step") for e in map(json.loads, log.read_text().splitlines()) if e["type"] == "turn.completed"]
            sleeping += steps == [1]
        return finished, sleeping

    deadline = time.monotonic() + 240
    while not (len(state()[0]) >= 2 and state()[1] == 2):
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline, state()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished_before = state()[0]
    assert len(finished_before) == 2
    # the parent's Ray goes with it: no task of the dead run goes on beside the resumed one
    deadline = time.monotonic() + 60
    while _ray_processes_of(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes_of(ray_tmp) == []

    store = SessionStore(sessions)
    parent_meta = next(m for m in store.list() if not m.parent_id)
    finished_ids = {m.session_id for m in store.list() if m.parent_id == parent_meta.session_id}
    assert len(finished_ids) == 2  # a remote sub-agent's session reaches the parent's store when it ends
    resumed = kcode("resume", parent_meta.session_id, cwd=calc_repo, env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    children = [m for m in store.list() if m.parent_id == parent_meta.session_id]
    assert sorted(m.task.split("Your task (")[1].split("):")[0] for m in children) == sorted(f"gen [{i + 1}/6] {item}" for i, item in enumerate(items))
    resumed_once = 0
    for meta in children:
        events = [e for e in read_event_dicts(store.log_path(meta.session_id)) if e["agent_id"] == meta.session_id]
        flags = [bool(e.get("resumed")) for e in events if e["type"] == "session.started"]
        if meta.session_id in finished_ids:
            assert flags == [False]
        else:
            assert flags in ([False], [False, True]), flags
            resumed_once += flags == [False, True]
        steps = [e["step"] for e in events if e["type"] == "turn.completed"]
        assert steps == [1, 2, 3, 4], f"{meta.session_id} took a logged step again: {steps}"
        assert store.read_meta(meta.session_id).status == "finished"
    assert resumed_once == 2  # the two in flight at the kill went on from their logs
    assert {item: (side / item).read_text() for item in items} == {item: "once\n" for item in items}
    head = store.read_meta(parent_meta.session_id)
    final = _tree(calc_repo, git(calc_repo, "rev-parse", head.branch).strip())
    assert {name: final[name] for name in final if name.startswith("gen/")} == {f"gen/{item}.txt": f"{item}\n" for item in items}
    assert git(calc_repo, "worktree", "list").strip().count("\n") == 0
    assert _ray_processes_of(ray_tmp) == []  # the resumed run's Ray stopped with it
    shutil.rmtree(ray_tmp, ignore_errors=True)
