"""The real ``kcode`` executable in a real terminal (tmux): ``kcode TASK`` opens the TUI and
runs a scripted task to the end; ``kcode attach`` opens a headless run going on elsewhere,
steers it, and the run goes on after the TUI closes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kcode.session import SessionStore, read_events
from tests.conftest import FIX_TURNS, git, write_script

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
ROOT = Path(__file__).resolve().parents[2]


class Tmux:
    def __init__(self, name: str, socket: Path) -> None:
        self.name, self.socket = name, socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False).stdout

    def start(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        exports = " ".join(f"{k}={v!r}" for k, v in env.items())
        line = f"cd {str(cwd)!r} && env {exports} {' '.join(repr(c) for c in command)}; echo EXITED-$?; sleep 600"
        subprocess.run(["tmux", "-S", str(self.socket), "new-session", "-d", "-s", self.name, "-x", "110", "-y", "32", line], check=True)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def wait_for(self, text: str, timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} never showed; the screen:\n{self.screen()}")

    def kill(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def tmux(tmp_path):
    session = Tmux(f"kcode-{os.getpid()}-{time.monotonic_ns()}", tmp_path / "tmux.sock")
    yield session
    session.kill()


def _env(kcode_home: Path, **extra: str) -> dict[str, str]:
    # COLUMNS/LINES as a parent that loaded GNU readline exports them (pytest without a tty
    # does): the TUI must still take the pane's real size, 110x32 (kcode.tui.app.main)
    return {"KCODE_HOME": str(kcode_home), "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24", **extra}


def test_kcode_task_runs_to_the_end_in_a_terminal(tmux, calc_repo, tmp_path, kcode_home):
    script = write_script(tmp_path / "fix.json", FIX_TURNS)
    tmux.start([sys.executable, "-m", "kcode", "Fix the failing test"], calc_repo, _env(kcode_home, KCODE_MODEL=f"scripted:{script}"))
    screen = tmux.wait_for("■ finished after 5 steps")
    assert "✓ tests pass 2 passed, 0 failed" in screen and "⎇ kcode/" in screen
    tmux.keys("/quit", "Enter")
    tmux.wait_for("EXITED-0", timeout=60)
    (meta,) = SessionStore().list()
    assert meta.status == "finished"
    assert "return a + b" in git(calc_repo, "show", f"{meta.branch}:calc/__init__.py")


def test_attach_to_a_headless_run_steers_it_and_leaves_it_going(tmux, calc_repo, tmp_path, kcode_home):
    # each command waits for the test's go (a file the sandbox can read: not under its private
    # /tmp), not for a fixed time: a loaded machine may start the TUI after any fixed sleep
    gates = Path(tempfile.mkdtemp(prefix="kcode-gates-", dir="/var/tmp"))
    (gates / "gate.sh").write_text('for i in $(seq 1500); do [ -e "$(dirname "$0")/go-$1" ] && break; sleep 0.2; done; echo "gate $1 open"\n')
    gate = lambda n: {"tool_calls": [{"name": "bash", "arguments": {"command": f"sh {gates}/gate.sh {n}"}}]}  # noqa: E731
    turns = [gate(1), gate(2), {"content": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "both ran"}}]}]
    script = write_script(tmp_path / "slow.json", turns)
    # a question: its finish without changes is taken at once (kcode.agent.verify)
    env = {**os.environ, **_env(kcode_home)}
    headless = subprocess.Popen([sys.executable, "-m", "kcode", "run", "How long do these commands take?", "--model", f"scripted:{script}"], cwd=calc_repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not SessionStore().list() and time.monotonic() < deadline:
            time.sleep(0.2)
        (meta,) = SessionStore().list()
        tmux.start([sys.executable, "-m", "kcode", "attach", meta.session_id], calc_repo, _env(kcode_home))
        tmux.wait_for("gate.sh 1")
        tmux.keys("use the second result", "Enter")
        tmux.wait_for("use the second result")
        (gates / "go-1").touch()
        tmux.wait_for("gate.sh 2")  # step 2, appended to the log after the TUI attached
        tmux.keys("C-q")  # the TUI closes; the run goes on
        tmux.wait_for("EXITED-", timeout=60)
        assert headless.poll() is None
        (gates / "go-2").touch()
        out, err = headless.communicate(timeout=180)
    finally:
        if headless.poll() is None:
            headless.kill()
        shutil.rmtree(gates, ignore_errors=True)
    assert headless.returncode == 0, err[-2000:]
    events = list(read_events(SessionStore().log_path(meta.session_id)))
    assert any(e.type == "steering.delivered" and e.text == "use the second result" and e.step == 2 for e in events)
    assert [e.output.splitlines()[0] for e in events if e.type == "tool.finished" and e.name == "bash"] == ["gate 1 open", "gate 2 open"]
    assert events[-1].type == "session.finished" and events[-1].status == "finished"
