"""A run's work tree comes and goes; its branch stays (real git throughout)."""

from __future__ import annotations

import pytest

from kcode.errors import VcsError
from kcode.vcs import Workspace
from kcode.vcs.worktree import checked_out_at, delete_branch

from tests.conftest import git


def _worked(calc_repo, tmp_path, session_id="s1"):
    ws = Workspace.create(calc_repo, session_id, tmp_path / "wt")
    (ws.path / "calc" / "__init__.py").write_text("fixed\n")
    ws.checkpoint("step 1")
    return ws


def test_removing_the_work_tree_keeps_the_branch_and_frees_it_for_git_switch(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    (ws.path / "half-done.txt").write_text("a step cut short\n")  # uncommitted: removed too
    assert checked_out_at(calc_repo, ws.branch) == ws.path.resolve()
    assert ws.remove_worktree() is True
    assert not ws.path.exists()
    assert checked_out_at(calc_repo, ws.branch) is None
    assert git(calc_repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(calc_repo, "rev-parse", ws.branch).strip() == ws.head
    assert ws.changed_files() == [{"path": "calc/__init__.py", "kind": "update"}]  # read from the commits
    assert "calc/__init__.py" in ws.diff_stat()
    git(calc_repo, "switch", "-q", ws.branch)  # the user's own checkout can have it now
    assert (calc_repo / "calc" / "__init__.py").read_text() == "fixed\n"
    assert ws.remove_worktree() is False  # nothing left to remove


def test_reopen_checks_the_branch_out_again(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    ws.remove_worktree()
    ws.reopen()
    assert (ws.path / "calc" / "__init__.py").read_text() == "fixed\n"
    assert git(ws.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == ws.branch
    assert git(ws.path, "status", "--porcelain") == ""
    ws.reopen()  # already there: nothing to do
    assert checked_out_at(calc_repo, ws.branch) == ws.path.resolve()


def test_reopen_after_the_work_tree_was_deleted_by_hand(calc_repo, tmp_path):
    import shutil

    ws = _worked(calc_repo, tmp_path)
    shutil.rmtree(ws.path)  # git still lists it until pruned
    ws.reopen()
    assert (ws.path / "calc" / "__init__.py").read_text() == "fixed\n"


def test_reopen_refuses_a_branch_the_user_has_checked_out(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    ws.remove_worktree()
    git(calc_repo, "switch", "-q", ws.branch)
    with pytest.raises(VcsError, match=f"checked out in {calc_repo}"):
        ws.reopen()
    assert not ws.path.exists()


def test_reopen_without_the_branch_says_so(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    ws.remove_worktree()
    git(calc_repo, "branch", "-D", ws.branch)
    with pytest.raises(VcsError, match="no longer exists"):
        ws.reopen()


def test_move_to_resets_the_work_tree_or_moves_the_branch_without_one(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    step1 = ws.head
    (ws.path / "calc" / "__init__.py").write_text("step 2\n")
    ws.checkpoint("step 2")
    (ws.path / "stray.txt").write_text("cut short\n")
    ws.move_to(step1)  # with a work tree: files and branch go back
    assert (ws.path / "calc" / "__init__.py").read_text() == "fixed\n" and not (ws.path / "stray.txt").exists()
    assert git(calc_repo, "rev-parse", ws.branch).strip() == step1
    ws.remove_worktree()
    ws.move_to(ws.base_commit)  # without one: only the branch
    assert git(calc_repo, "rev-parse", ws.branch).strip() == ws.base_commit
    git(calc_repo, "switch", "-q", ws.branch)
    with pytest.raises(VcsError, match="checked out in"):
        ws.move_to(step1)  # never moves a branch under the user's own checkout


def test_delete_branch_takes_the_abandoned_refs_too(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    git(calc_repo, "update-ref", "refs/kcode/abandoned/s1/step-3", ws.head)
    git(calc_repo, "update-ref", "refs/kcode/abandoned/s10/step-3", ws.head)  # another session's
    ws.remove_worktree()
    assert delete_branch(calc_repo, ws.branch, "s1") is True
    assert git(calc_repo, "branch", "--list", ws.branch) == ""
    assert git(calc_repo, "for-each-ref", "--format=%(refname)", "refs/kcode/").split() == ["refs/kcode/abandoned/s10/step-3"]
    assert delete_branch(calc_repo, ws.branch, "s1") is False


def test_delete_branch_refuses_a_checked_out_branch(calc_repo, tmp_path):
    ws = _worked(calc_repo, tmp_path)
    with pytest.raises(VcsError, match="checked out in"):
        delete_branch(calc_repo, ws.branch, "s1")
    assert git(calc_repo, "rev-parse", ws.branch).strip() == ws.head


def test_in_place_workspaces_have_no_work_tree_to_remove(calc_repo, tmp_path):
    ws = Workspace.create(calc_repo, "s2", tmp_path / "wt", in_place=True)
    assert ws.remove_worktree() is False
    ws.reopen()
    assert calc_repo.exists() and (calc_repo / "calc" / "__init__.py").exists()


@pytest.mark.parametrize("in_place", [False, True])
def test_a_planned_workspace_makes_nothing_until_it_is_opened(calc_repo, tmp_path, in_place):
    (calc_repo / "calc" / "__init__.py").write_text("uncommitted\n")  # the base is a snapshot
    before = (git(calc_repo, "for-each-ref"), git(calc_repo, "worktree", "list", "--porcelain"))
    ws = Workspace.planned(calc_repo, "s9", tmp_path / "wt", in_place=in_place)
    assert (git(calc_repo, "for-each-ref"), git(calc_repo, "worktree", "list", "--porcelain")) == before
    assert not (tmp_path / "wt").exists() and ws.branch.endswith("s9")
    ws.open()
    assert git(calc_repo, "rev-parse", ws.branch).strip() == ws.base_commit
    assert git(calc_repo, "show", f"{ws.base_commit}:calc/__init__.py") == "uncommitted\n"
    if not in_place:
        assert checked_out_at(calc_repo, ws.branch) == ws.path.resolve()
        assert (ws.path / "calc" / "__init__.py").read_text() == "uncommitted\n"
    ws.open()  # opened already: nothing changes
    assert git(calc_repo, "rev-parse", ws.branch).strip() == ws.base_commit
