"""A cloned repository's own ``.kcode/`` settings may only tighten the sandbox until the user
trusts the repository (``kcode trust`` or ``KCODE_TRUST_PROJECT=1``): the real executable."""

from __future__ import annotations

import pytest

from tests.conftest import git, snapshot
from tests.sandbox.conftest import requires_bwrap


def _commit(repo, path: str, text: str) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"add {path}")


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        (".kcode/config.toml", 'sandbox = "off"\n', "chooses sandbox profile 'off', which runs commands unsandboxed"),
        (".kcode/config.toml", 'sandbox = "workspace-write-network"\n', "which opens the network"),
        (".kcode/config.toml", 'base_url = "http://127.0.0.1:9/v1"\n', "sets base_url"),
        (".kcode/sandbox/workspace-write.toml", 'extends = "workspace-write"\nnetwork = true\n', "turns the network on"),
        (".kcode/sandbox/workspace-write.toml", 'extends = "workspace-write"\nreadable = ["~/.ssh"]\n', "adds the host path '~/.ssh'"),
    ],
)
def test_run_refuses_a_repository_that_loosens_its_own_sandbox(kcode, calc_repo, fix_script, path, text, message):
    _commit(calc_repo, path, text)
    before = snapshot(calc_repo)
    proc = kcode("run", "Fix the failing test", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "comes with the repository" in proc.stderr and message in proc.stderr and "kcode trust" in proc.stderr
    assert snapshot(calc_repo) == before
    assert "kcode/" not in git(calc_repo, "branch", "--list")  # no session was started


@requires_bwrap
def test_trusting_the_repository_lets_its_settings_apply(kcode, calc_repo, fix_script):
    _commit(calc_repo, ".kcode/sandbox/workspace-write.toml", 'extends = "workspace-write"\nnetwork = true\n')
    assert kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo).returncode == 2
    trusted = kcode("trust", cwd=calc_repo)
    assert trusted.returncode == 0 and trusted.stdout.strip() == f"Trusted: {calc_repo.resolve()}"
    assert kcode("trust", "--list", cwd=calc_repo).stdout.splitlines() == [str(calc_repo.resolve())]
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Tests: passing" in proc.stdout
    removed = kcode("trust", "--remove", cwd=calc_repo)
    assert removed.returncode == 0 and "No longer trusted" in removed.stdout
    assert kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo).returncode == 2
    env_trust = kcode("run", "fix", "--model", f"scripted:{fix_script}", cwd=calc_repo, env={"KCODE_TRUST_PROJECT": "1"})
    assert env_trust.returncode == 0, env_trust.stderr


@requires_bwrap
def test_settings_that_tighten_need_no_trust(kcode, calc_repo):
    """A repository may choose the read-only profile without being trusted."""
    _commit(calc_repo, ".kcode/config.toml", 'sandbox = "read-only"\n')
    proc = kcode("sandbox", "exec", "--repo", str(calc_repo), "--", "touch", "x", cwd=calc_repo)
    assert proc.returncode != 0 and "Read-only file system" in proc.stdout
    assert not (calc_repo / "x").exists()


def test_the_user_overriding_a_setting_is_not_the_repository_choosing_it(kcode, calc_repo, fix_script):
    _commit(calc_repo, ".kcode/config.toml", 'sandbox = "off"\n')
    proc = kcode("run", "fix", "--model", f"scripted:{fix_script}", "--sandbox", "off", cwd=calc_repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "prefix"),
    [
        (("sandbox", "exec", "--", "true"), "kcode sandbox exec: "),
        (("pack", "--json"), "kcode pack: "),
    ],
)
def test_every_command_that_reads_the_repository_config_checks_it(kcode, calc_repo, args, prefix):
    """The check runs where a command starts work, not inside load_config: the commands
    besides ``kcode run`` that read the repository's config.toml make it too."""
    _commit(calc_repo, ".kcode/config.toml", 'sandbox = "off"\nbase_url = "http://127.0.0.1:9/v1"\n')
    proc = kcode(*args, cwd=calc_repo)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(prefix) and "comes with the repository and sets base_url" in proc.stderr
    assert "kcode trust" in proc.stderr
    trusted = kcode(*args, cwd=calc_repo, env={"KCODE_TRUST_PROJECT": "1"})
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
