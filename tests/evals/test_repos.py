"""The checkout an instance's agent sees holds the base commit and its ancestors, nothing newer."""

import subprocess

import pytest

from kcode.evals.dataset import Instance
from kcode.evals.repos import RepoError, checkout, find_mirror


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def mirror(tmp_path):
    """owner__name: three commits on main, a tag on the newest, a side branch."""
    repo = tmp_path / "repos" / "acme__widgets"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@t")
    _git(repo, "config", "user.name", "t")
    shas = []
    for n in range(3):
        (repo / "w.py").write_text(f"VALUE = {n}\n")
        _git(repo, "add", "w.py")
        _git(repo, "commit", "-qm", f"commit {n}: {'the fix' if n == 2 else 'work'}")
        shas.append(_git(repo, "rev-parse", "HEAD"))
    _git(repo, "tag", "v1.0")
    _git(repo, "branch", "side", shas[2])
    return repo, shas


def test_checkout_hides_the_future(mirror, tmp_path):
    repo, shas = mirror
    inst = Instance("acme__widgets-1", "acme/widgets", shas[1], "p")
    assert find_mirror(repo.parent, "acme/widgets") == repo
    dest = checkout(inst, tmp_path / "co", repo.parent)
    assert (dest / "w.py").read_text() == "VALUE = 1\n"
    assert _git(dest, "rev-parse", "HEAD") == shas[1]
    assert _git(dest, "branch", "--show-current") == "main"
    assert _git(dest, "log", "--all", "--format=%H").split() == [shas[1], shas[0]]
    assert _git(dest, "tag") == "" and _git(dest, "remote") == ""
    assert "the fix" not in _git(dest, "log", "--all")
    with pytest.raises(subprocess.CalledProcessError):
        _git(dest, "cat-file", "-e", shas[2])
    assert _git(dest, "status", "--porcelain") == ""


def test_checkout_errors_are_clear(mirror, tmp_path, monkeypatch):
    repo, shas = mirror
    with pytest.raises(RepoError, match="cannot check out 0123456789ab"):
        checkout(Instance("x", "acme/widgets", "0123456789ab" + "0" * 28, "p"), tmp_path / "co", repo.parent)
    assert not (tmp_path / "co").exists()
    monkeypatch.setenv("KCODE_EVAL_OFFLINE", "1")
    with pytest.raises(RepoError, match="no mirror"):
        checkout(Instance("y", "acme/other", shas[0], "p"), tmp_path / "co2", repo.parent)
