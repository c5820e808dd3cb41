from __future__ import annotations

from kcode.vcs import Workspace, apply_result
from kcode.vcs.git import git as kgit

from tests.conftest import git, snapshot


def test_worktree_starts_from_uncommitted_state_without_touching_the_checkout(calc_repo, tmp_path):
    (calc_repo / "calc" / "__init__.py").write_text("# user edit\n" + (calc_repo / "calc" / "__init__.py").read_text())
    (calc_repo / "notes.txt").write_text("untracked but wanted\n")
    git(calc_repo, "add", "notes.txt")  # staged, too
    (calc_repo / "scratch.txt").write_text("untracked\n")
    before = snapshot(calc_repo)
    ws = Workspace.create(calc_repo, "s1", tmp_path / "wt")
    assert snapshot(calc_repo) == before
    assert ws.path != calc_repo and ws.branch == "kcode/s1"
    assert (ws.path / "calc" / "__init__.py").read_text().startswith("# user edit")
    assert (ws.path / "notes.txt").exists() and (ws.path / "scratch.txt").exists()
    assert ws.base_commit != git(calc_repo, "rev-parse", "HEAD").strip()


def test_clean_checkout_starts_at_head_and_checkpoints_only_changes(calc_repo, tmp_path):
    ws = Workspace.create(calc_repo, "s2", tmp_path / "wt")
    assert ws.base_commit == git(calc_repo, "rev-parse", "HEAD").strip()
    assert ws.checkpoint("nothing") is None
    (ws.path / "calc" / "__init__.py").write_text("changed\n")
    (ws.path / "new.py").write_text("x = 1\n")
    (ws.path / "tests" / "test_calc.py").unlink()
    (ws.path / "calc" / "__pycache__").mkdir()
    (ws.path / "calc" / "__pycache__" / "x.pyc").write_bytes(b"\x00")
    info = ws.checkpoint("step 1")
    assert sorted((c["path"], c["kind"]) for c in info.changes) == [
        ("calc/__init__.py", "update"), ("new.py", "add"), ("tests/test_calc.py", "delete"),
    ]
    assert git(calc_repo, "rev-parse", "kcode/s2").strip() == info.commit
    assert "new.py" in ws.diff_stat()
    assert git(calc_repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_in_place_checkpoints_go_to_a_hidden_ref(calc_repo, tmp_path):
    index_before = (calc_repo / ".git" / "index").read_bytes()
    ws = Workspace.create(calc_repo, "s3", tmp_path / "wt", in_place=True)
    assert ws.path == calc_repo and ws.branch == "refs/kcode/s3"
    (calc_repo / "calc" / "__init__.py").write_text("fixed\n")
    info = ws.checkpoint("step 1")
    assert info.changes == [{"path": "calc/__init__.py", "kind": "update"}]
    assert ws.checkpoint("again") is None
    assert git(calc_repo, "rev-parse", "refs/kcode/s3").strip() == info.commit
    assert git(calc_repo, "branch", "--list").strip() == "* main"
    assert (calc_repo / ".git" / "index").read_bytes() == index_before
    assert git(calc_repo, "log", "--oneline").count("\n") == 1


def test_repo_without_commits(tmp_path):
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    ws = Workspace.create(repo, "s4", tmp_path / "wt")
    assert (ws.path / "a.txt").read_text() == "a\n"


def test_apply_three_way(calc_repo, tmp_path):
    ws = Workspace.create(calc_repo, "s5", tmp_path / "wt")
    (ws.path / "calc" / "__init__.py").write_text((ws.path / "calc" / "__init__.py").read_text().replace("a - b", "a + b"))
    (ws.path / "tests" / "test_calc.py").write_text((ws.path / "tests" / "test_calc.py").read_text() + "\n# kcode line\n")
    (ws.path / "added.py").write_text("y = 2\n")
    ws.checkpoint("work")
    # meanwhile the user edits: one file elsewhere (merges), one on the same line (conflict)
    user_test = (calc_repo / "tests" / "test_calc.py").read_text()
    (calc_repo / "tests" / "test_calc.py").write_text("# user header\n" + user_test)
    (calc_repo / "calc" / "__init__.py").write_text((calc_repo / "calc" / "__init__.py").read_text().replace("a - b", "b - a"))
    report = apply_result(calc_repo, ws.base_commit, ws.head)
    assert report.applied == ["added.py"]
    assert report.merged == ["tests/test_calc.py"]
    assert report.conflicts == ["calc/__init__.py"] and not report.ok
    merged = (calc_repo / "tests" / "test_calc.py").read_text()
    assert merged.startswith("# user header") and merged.endswith("# kcode line\n")
    conflicted = (calc_repo / "calc" / "__init__.py").read_text()
    assert "<<<<<<< yours" in conflicted and "b - a" in conflicted and "a + b" in conflicted
    again = apply_result(calc_repo, ws.base_commit, ws.head)
    assert "added.py" in again.unchanged


def test_hooks_never_run(calc_repo, tmp_path):
    hook = calc_repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/hook-ran\n")
    hook.chmod(0o755)
    ws = Workspace.create(calc_repo, "s6", tmp_path / "wt")
    (ws.path / "x.txt").write_text("x")
    assert ws.checkpoint("c") is not None
    assert not (tmp_path / "hook-ran").exists()
    assert kgit(["log", "-1", "--format=%an"], ws.path).strip() == "kcode"
