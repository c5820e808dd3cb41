"""Nothing left behind: through the real ``kcode``, a run's work tree goes when the run ends,
its branch stays (for ``git switch``, ``apply``, ``diff``, ``rewind``, ``resume``), and
``kcode sessions --prune`` clears what killed runs left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git, write_script


def _only_session(home: Path) -> dict:
    (meta,) = [json.loads(p.read_text()) for p in (home / "data" / "sessions").glob("*/meta.json")]
    return meta


def _worktrees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_a_finished_run_leaves_only_its_branch(kcode, calc_repo, fix_script, kcode_home):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert proc.returncode == 0, proc.stderr
    meta = _only_session(kcode_home)
    assert not Path(meta["workdir"]).exists()
    assert _worktrees(calc_repo) == [str(calc_repo)]
    assert f"kcode diff {meta['session_id']}" in proc.stdout and f"git switch {meta['branch']}" in proc.stdout
    diff = kcode("diff", meta["session_id"], cwd=calc_repo)
    assert diff.returncode == 0 and "-    return a - b\n+    return a + b" in diff.stdout
    stat = kcode("diff", "--stat", cwd=calc_repo)  # the latest session of this repository
    assert stat.returncode == 0 and "calc/__init__.py | 2 +-" in stat.stdout
    replay = kcode("replay", meta["session_id"], cwd=calc_repo)
    assert replay.returncode == 0 and json.loads(replay.stdout.splitlines()[-1])["subtype"] == "success"
    applied = kcode("apply", meta["session_id"], cwd=calc_repo)
    assert applied.returncode == 0 and "1 files brought over" in applied.stdout
    git(calc_repo, "stash", "-q")  # the user's checkout must be clean to switch
    git(calc_repo, "switch", "-q", meta["branch"])  # git refused while kcode's work tree had it
    assert "return a + b" in (calc_repo / "calc" / "__init__.py").read_text()
    assert git(calc_repo, "log", "-1", "--format=%s").strip() == "kcode: step 3"


def test_resume_makes_the_work_tree_again_and_removes_it_when_done(kcode, calc_repo, fix_script, kcode_home):
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--max-steps", "3", cwd=calc_repo)
    assert proc.returncode == 3, proc.stderr
    meta = _only_session(kcode_home)
    assert not Path(meta["workdir"]).exists()  # a budget stop keeps nothing the branch lacks
    resumed = kcode("resume", "--max-steps", "10", cwd=calc_repo)
    assert resumed.returncode == 0, resumed.stderr
    assert "Status: finished after 5 steps" in resumed.stdout
    assert "Tests: passing (2 passed" in resumed.stdout  # the tests ran in the re-made work tree
    assert not Path(meta["workdir"]).exists() and _worktrees(calc_repo) == [str(calc_repo)]
    assert "return a + b" in git(calc_repo, "show", f"{meta['branch']}:calc/__init__.py")


def test_resume_says_so_when_the_user_has_the_branch_checked_out(kcode, calc_repo, fix_script, kcode_home):
    assert kcode("run", "fix", "--model", f"scripted:{fix_script}", "--max-steps", "3", cwd=calc_repo).returncode == 3
    meta = _only_session(kcode_home)
    git(calc_repo, "switch", "-q", meta["branch"])
    resumed = kcode("resume", meta["session_id"], "--max-steps", "10", cwd=calc_repo)
    assert resumed.returncode == 1
    assert f"branch {meta['branch']} is checked out in {calc_repo}" in resumed.stderr
    git(calc_repo, "switch", "-q", "main")
    assert kcode("resume", meta["session_id"], "--max-steps", "10", cwd=calc_repo).returncode == 0


def test_rewind_without_a_work_tree_moves_the_branch_and_resume_goes_on(kcode, calc_repo, fix_script, kcode_home):
    assert kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo).returncode == 0
    meta = _only_session(kcode_home)
    rewound = kcode("rewind", meta["session_id"], "--to", "2", cwd=calc_repo)
    assert rewound.returncode == 0, rewound.stderr
    assert "return a - b" in git(calc_repo, "show", f"{meta['branch']}:calc/__init__.py")  # step 3's edit undone
    assert not Path(meta["workdir"]).exists()
    resumed = kcode("resume", meta["session_id"], cwd=calc_repo)
    assert resumed.returncode == 0 and "Status: finished after 5 steps" in resumed.stdout
    assert "return a + b" in git(calc_repo, "show", f"{meta['branch']}:calc/__init__.py")


def _killed_mid_run(home: Path, repo: Path, tmp_path: Path) -> subprocess.Popen:
    """A ``kcode run`` busy in a long tool call (its work tree exists while it runs)."""
    script = write_script(tmp_path / "slow.json", [
        {"tool_calls": [{"name": "write_file", "arguments": {"path": "notes.txt", "content": "step 1\n"}}]},
        {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 60"}}]},
    ])  # fmt: skip
    env = {**os.environ, "KCODE_HOME": str(home), "NO_COLOR": "1"}
    proc = subprocess.Popen([shutil.which("kcode"), "run", "wait", "--model", f"scripted:{script}", "--pack", "none"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logs = list((home / "data" / "sessions").glob("*/events.jsonl"))
        if logs and '"sleep 60"' in logs[0].read_text():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run never reached its slow tool call")


def _age(home: Path, session_id: str, days: float) -> None:
    """Make a session look idle for ``days`` (what its meta and log mtime say)."""
    directory = home / "data" / "sessions" / session_id
    then = time.time() - days * 86400
    meta = json.loads((directory / "meta.json").read_text())
    meta["updated"] = then
    (directory / "meta.json").write_text(json.dumps(meta))
    os.utime(directory / "events.jsonl", (then, then))


def test_prune_removes_old_work_trees_keeps_branches_unless_asked_and_spares_running_sessions(kcode, calc_repo, tmp_path, kcode_home):
    running = _killed_mid_run(kcode_home, calc_repo, tmp_path)
    try:
        meta = _only_session(kcode_home)
        _age(kcode_home, meta["session_id"], 60)
        spared = kcode("sessions", "--prune", "--older-than", "0", cwd=calc_repo)
        assert spared.returncode == 0, spared.stderr
        assert f"{meta['session_id']}  left alone: running" in spared.stdout
        assert Path(meta["workdir"]).exists()
        twice = kcode("resume", meta["session_id"], cwd=calc_repo)
        assert twice.returncode == 1 and "is running in another kcode process" in twice.stderr
    finally:
        running.send_signal(signal.SIGKILL)
        running.communicate(timeout=30)
    assert Path(meta["workdir"]).exists()  # a killed run leaves its work tree behind
    _age(kcode_home, meta["session_id"], 10)
    young = kcode("sessions", "--prune", cwd=calc_repo)  # default: idle for 30 days
    assert young.returncode == 0 and "0 work trees removed" in young.stdout
    assert Path(meta["workdir"]).exists()
    _age(kcode_home, meta["session_id"], 40)
    pruned = kcode("sessions", "--prune", cwd=calc_repo)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed work tree {meta['workdir']}" in pruned.stdout and "1 work trees removed" in pruned.stdout
    assert not Path(meta["workdir"]).exists() and _worktrees(calc_repo) == [str(calc_repo)]
    assert git(calc_repo, "show", f"{meta['branch']}:notes.txt") == "step 1\n"  # the branch stays
    assert kcode("sessions", "--delete-branches", cwd=calc_repo).returncode == 2  # only with --prune
    deleted = kcode("sessions", "--prune", "--older-than", "0", "--delete-branches", cwd=calc_repo)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted branch {meta['branch']}" in deleted.stdout and "1 branches deleted" in deleted.stdout
    assert git(calc_repo, "branch", "--list", "kcode/*") == ""
    assert meta["session_id"] in kcode("sessions", cwd=calc_repo).stdout  # the record stays
    gone = kcode("resume", meta["session_id"], cwd=calc_repo)
    assert gone.returncode == 1 and "no longer exists" in gone.stderr


# The real run_task, killed by SIGKILL just before or just after its `git worktree add`
# (the real git runs; the process dies around it, as a kill at that instant would).
KILLED_AROUND_WORKTREE_ADD = """
import os, signal, sys
from pathlib import Path
import kcode.vcs.workspace as workspace
from kcode.agent.runner import run_task
from kcode.config import Config

moment, script, repo = sys.argv[1], sys.argv[2], Path(sys.argv[3])
real_git = workspace.git

def git(args, *rest, **options):
    adding = list(args[:2]) == ["worktree", "add"]
    if adding and moment == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = real_git(args, *rest, **options)
    if adding and moment == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return out

workspace.git = git
run_task("fix", Config(model=f"scripted:{script}"), repo=repo)
"""


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_run_killed_around_making_its_work_tree_leaves_a_session_that_names_it(moment, kcode, calc_repo, fix_script, kcode_home):
    """The meta is written before the work tree is made: whatever the kill left, a session
    names it, so prune removes the work tree and resume finishes the run."""
    args = [sys.executable, "-c", KILLED_AROUND_WORKTREE_ADD, moment, str(fix_script), str(calc_repo)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr[-3000:]
    meta = _only_session(kcode_home)
    assert meta["status"] == "running" and meta["workdir"]
    assert Path(meta["workdir"]).exists() == (moment == "after")
    assert _worktrees(calc_repo) == [str(calc_repo)] + ([meta["workdir"]] if moment == "after" else [])
    if moment == "after":
        pruned = kcode("sessions", "--prune", "--older-than", "0", cwd=calc_repo)
        assert pruned.returncode == 0 and f"removed work tree {meta['workdir']}" in pruned.stdout, pruned.stdout + pruned.stderr
        assert not Path(meta["workdir"]).exists() and _worktrees(calc_repo) == [str(calc_repo)]
    resumed = kcode("resume", cwd=calc_repo)  # no branch yet ("before"), or no work tree
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Status: finished after 5 steps" in resumed.stdout
    assert "return a + b" in git(calc_repo, "show", f"{meta['branch']}:calc/__init__.py")
    assert not Path(meta["workdir"]).exists() and _worktrees(calc_repo) == [str(calc_repo)]
