"""Approvals in a run of this process (kcode.agent.live.LocalRunHandle, what the TUI uses),
with a scripted model and the real bubblewrap sandbox: a command whose text shows that it
needs the network or writes outside the repository is asked about before it runs, and runs
exactly once, with the grant; "always" gives later commands the network from their start."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from kcode.agent.live import LocalRunHandle
from kcode.config import Config
from kcode.events import ApprovalRequested, ToolCallFinished, ToolCallStarted
from kcode.sandbox import probe_bubblewrap
from kcode.session import SessionStore
from kcode.tools.shell import network_command, written_paths
from tests.agent.test_run_control import FINISH, Recorder, bash
from tests.conftest import git, write_script

LOOKUP = "python3 -c \"import socket; socket.getaddrinfo('example.com', 443)\""
CURL = "curl -sS --max-time 5 http://example.com/ -o /dev/null"


@pytest.fixture
def outside():
    path = Path(tempfile.mkdtemp(prefix="kcode-approvals-", dir="/var/tmp"))  # not /tmp: commands get a private one
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_what_a_command_needs_is_read_from_its_text():
    assert network_command("cd x && git push origin main") == "git push origin" and network_command("python3 -m pip install rich") == "python3 -m pip"
    assert network_command("FOO=1 curl -s http://h") == "curl -s http://h" and network_command("git status; pip list") is None
    assert written_paths("echo a > /etc/x 2>&1; cat y | tee -a ../z >/dev/null; cp a b /opt/c; ls 2>/var/e") == ["/etc/x", "/var/e", "../z", "/opt/c"]


@pytest.mark.skipif(not probe_bubblewrap().usable, reason="approvals grant what a bubblewrap sandbox withholds")
def test_an_approved_command_runs_once_with_the_grant(calc_repo, tmp_path, outside):
    turns = [
        bash(f"echo ran >> runs.txt; {CURL}"),  # asked before it runs: denied, so it never runs
        bash(f"echo ran >> {outside}/log; echo one > {outside}/one"),  # asked before: once
        bash(f"echo ran >> runs.txt; {CURL}"),  # asked again before: always
        bash(f"echo ran >> runs.txt; {LOOKUP}"),  # its text shows no need; the network is allowed always: not asked, run once
        *[FINISH] * 3,  # the calc tests fail (kcode runs them after changes): the finish is sent back twice
    ]  # fmt: skip
    handle = LocalRunHandle(Config(model=f"scripted:{write_script(tmp_path / 's.json', turns)}", approvals="on-request"), repo=calc_repo)
    seen = Recorder()
    answers = iter([("deny", "not now"), ("once", ""), ("always", "")])
    runs_before_asking = []

    def answer(event) -> None:
        if isinstance(event, ApprovalRequested):
            runs_before_asking.append(git(Path(SessionStore().list()[0].workdir), "status", "--porcelain"))
            decision, reason = next(answers)
            handle.answer(event.request_id, decision, reason)

    handle.subscribe(seen)
    handle.subscribe(answer)
    handle.start("How do these commands behave?")
    assert handle.wait(120)
    handle.close()
    assert handle.outcome.result.status == "finished"
    requests = [(e.step, e.needs, e.reason) for e in seen.events if isinstance(e, ApprovalRequested)]
    assert requests == [(1, "network", "it needs the network (curl -sS --max-time)"), (2, "write-outside", f"it writes outside the repository: {outside}/log, {outside}/one"),
                        (3, "network", "it needs the network (curl -sS --max-time)")]  # fmt: skip
    assert all("runs.txt" not in status for status in runs_before_asking)  # nothing ran before the questions
    results = {e.step: e.output for e in seen.events if isinstance(e, ToolCallFinished)}
    assert results[1] == "Not run: the user denied the network: not now"
    assert results[2] == "[exit code 0]\n[run with write access to " + f"{outside}/log, {outside}/one, as the user allowed]"
    assert "[run with the network, as the user allowed]" in results[3] and "its first run" not in results[3] + results[4]
    assert {p.name: p.read_text() for p in outside.iterdir()} == {"log": "ran\n", "one": "one\n"}
    (meta,) = SessionStore().list()
    assert git(calc_repo, "show", f"{meta.branch}:runs.txt") == "ran\nran\n"  # steps 3 and 4, once each
    assert [e.step for e in seen.events if isinstance(e, ToolCallStarted) and e.name == "bash"] == [1, 2, 3, 4]
