"""Attaching to a headless ``kcode run`` going on in another process, as ``kcode attach``
does: the attacher catches up from the log by seq and follows it, its steering reaches the
run through the control channel, a second writer is refused (by the handle and by the CLI),
the run goes on after the attacher closes; and approvals (once / always / deny) answered
through the channel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kcode.errors import ControlBusy
from kcode.events import ApprovalRequested, Event, MessageAdded, SessionFinished, SteeringDelivered, SteeringQueued, ToolCallFinished
from kcode.sandbox import probe_bubblewrap
from kcode.session import SessionStore, log_in_use
from kcode.session.control import AttachedRunHandle

from tests.conftest import write_script

FINISH = {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}


def bash(command: str, **extra) -> dict:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command, **extra}}]}


def start_run(kcode_home: Path, repo: Path, script: Path, *extra: str) -> subprocess.Popen:
    executable = shutil.which("kcode")
    assert executable, "kcode is not installed"
    env = {**os.environ, "KCODE_HOME": str(kcode_home), "NO_COLOR": "1"}
    return subprocess.Popen([executable, "run", "review calc", "--model", f"scripted:{script}", *extra],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)  # fmt: skip


def running_session(proc: subprocess.Popen, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for meta in SessionStore().list():
            if log_in_use(SessionStore().log_path(meta.session_id)):
                return SessionStore().dir(meta.session_id)
        time.sleep(0.05)
    raise AssertionError("no running session appeared")


class Seen:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, test, timeout: float = 60) -> Event:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = next((e for e in self.events if test(e)), None)
                if found is not None:
                    return found
                assert time.monotonic() < deadline, [e.type for e in self.events]
                self.cond.wait(0.1)


def test_an_attacher_catches_up_steers_is_the_only_writer_and_leaves_the_run_going(kcode, kcode_home, calc_repo, tmp_path):
    script = write_script(tmp_path / "s.json", [bash("sleep 1"), bash("sleep 4"), bash("sleep 3"), bash("sleep 3"), FINISH])
    proc = start_run(kcode_home, calc_repo, script)
    session_dir = running_session(proc)
    seen = Seen()
    handle = AttachedRunHandle(session_dir)
    handle.subscribe(seen)
    seen.wait_for(lambda e: isinstance(e, ToolCallFinished) and e.step == 1)  # caught up past step 1
    assert seen.events[0].type == "session.started"
    lines = [json.loads(line) for line in (session_dir / "events.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))

    with pytest.raises(ControlBusy, match="one writer at a time"):
        AttachedRunHandle(session_dir)
    refused = kcode("attach", session_dir.name, cwd=calc_repo, timeout=300)
    assert refused.returncode == 1 and "already attached" in refused.stderr and "--read-only" in refused.stderr

    seen.wait_for(lambda e: e.type == "tool.started" and e.step == 2)
    handle.steer("also check mul()")
    delivered = seen.wait_for(lambda e: isinstance(e, SteeringDelivered))
    queued = next(i for i, e in enumerate(seen.events) if isinstance(e, SteeringQueued) and e.text == "also check mul()")
    running = max(e.step for e in seen.events[:queued] if e.type == "turn.started")  # the step it was sent in
    assert delivered.text == "also check mul()" and delivered.step == running + 1 and running >= 2
    message = seen.wait_for(lambda e: isinstance(e, MessageAdded) and e.message.get("content") == "also check mul()")
    assert message.message["role"] == "user"
    handle.close()  # the run goes on without its attacher
    assert proc.poll() is None
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    finished = [json.loads(line) for line in (session_dir / "events.jsonl").read_text().splitlines()][-1]
    assert finished["type"] == "session.finished" and finished["status"] == "finished"
    assert handle.seq < finished["seq"]  # these came after the attacher had gone


LOOKUP = "python3 -c \"import socket; socket.getaddrinfo('example.com', 443)\""


@pytest.fixture
def outside():
    """A host folder outside the repository that the sandbox shows read-only (not under
    /tmp: commands get a private one)."""
    path = Path(tempfile.mkdtemp(prefix="kcode-approvals-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(not probe_bubblewrap().usable, reason="approvals grant what a bubblewrap sandbox withholds")
def test_approvals_once_always_and_deny_through_the_control_channel(kcode_home, calc_repo, tmp_path, outside):
    script = write_script(tmp_path / "s.json", [
        bash(f"echo one > {outside}/one"),  # refused by the sandbox, asked: once, run again
        bash(f"echo two > {outside}/two"),  # asked again: always
        bash(f"echo three > {outside}/three"),  # not asked any more
        bash(LOOKUP),  # no network: asked, denied with a reason
        FINISH,
    ])  # fmt: skip
    proc = start_run(kcode_home, calc_repo, script, "--approvals", "on-request")
    session_dir = running_session(proc)
    seen = Seen()
    handle = AttachedRunHandle(session_dir)
    answers = iter([("once", ""), ("always", ""), ("deny", "no downloads in this task")])

    def answer(event: Event) -> None:
        if isinstance(event, ApprovalRequested):
            decision, reason = next(answers)
            handle.answer(event.request_id, decision, reason)

    handle.subscribe(seen)
    handle.subscribe(answer)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    seen.wait_for(lambda e: isinstance(e, SessionFinished))
    handle.close()
    requests = [e for e in seen.events if isinstance(e, ApprovalRequested)]
    assert [(r.needs, r.step) for r in requests] == [("write-outside", 1), ("write-outside", 2), ("network", 4)]
    assert requests[0].paths == [f"{outside}/one"] and requests[0].reason == f"it writes outside the repository: {outside}/one"  # asked before it ran
    assert "failed without the network" in requests[2].reason and "name resolution" in requests[2].reason.lower()
    resolved = [(e.decision, e.reason) for e in seen.events if e.type == "approval.resolved"]
    assert resolved == [("once", ""), ("always", ""), ("deny", "no downloads in this task")]
    assert {p.name: p.read_text() for p in outside.iterdir()} == {"one": "one\n", "two": "two\n", "three": "three\n"}
    results = {e.step: e.output for e in seen.events if isinstance(e, ToolCallFinished)}
    assert results[1] == f"[exit code 0]\n[run with write access to {outside}/one, as the user allowed]"  # run once, with the grant
    assert "Not run again: the user denied the network: no downloads in this task" in results[4]
    assert "approval needed (network)" in err  # the headless run's own output says it waits


@pytest.mark.skipif(not probe_bubblewrap().usable, reason="needs the bubblewrap sandbox")
def test_headless_and_ci_runs_never_ask(kcode, calc_repo, tmp_path, outside):
    script = write_script(tmp_path / "s.json", [bash(f"echo x > {outside}/x"), FINISH])
    proc = kcode("run", "review calc", "--model", f"scripted:{script}", cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    (meta,) = SessionStore().list()
    events = [json.loads(line) for line in SessionStore().log_path(meta.session_id).read_text().splitlines()]
    assert not any(e["type"] == "approval.requested" for e in events)
    output = next(e["output"] for e in events if e["type"] == "tool.finished")
    assert "Read-only file system" in output and not (outside / "x").exists()
    ci = kcode("run", "--ci", "--approvals", "on-request", "review calc", "--model", f"scripted:{script}", cwd=calc_repo)
    assert ci.returncode == 2 and "--ci never asks" in ci.stderr
