"""What must keep working inside the sandbox (through both ways in), plus git worktrees,
output capping and the ``off`` profile."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from kcode.sandbox import LocalSandbox, create_sandbox
from tests.sandbox.conftest import git, requires_bwrap

pytestmark = requires_bwrap


def test_repo_writes_persist_and_git_works(run, repo: Path) -> None:
    result = run("echo changed > README.md && echo new > new.txt && git status --short && git diff --stat && git log --oneline")
    assert result.exit_code == 0, result.output
    assert (repo / "README.md").read_text() == "changed\n"
    assert (repo / "new.txt").read_text() == "new\n"
    assert "M README.md" in result.output and "?? new.txt" in result.output
    assert "init" in result.output


def test_tests_that_write_temp_files(run, repo: Path) -> None:
    (repo / "test_tmp.py").write_text(
        "import tempfile, pathlib\n\n"
        "def test_writes(tmp_path):\n    (tmp_path / 'a.txt').write_text('x')\n    assert (tmp_path / 'a.txt').read_text() == 'x'\n\n"
        "def test_tempfile():\n    with tempfile.NamedTemporaryFile('w') as f:\n        f.write('y')\n"
    )
    result = run("python3 -m pytest -q -p no:cacheprovider test_tmp.py && mktemp && echo hi > $HOME/file && cat $HOME/file", timeout=60)
    assert result.exit_code == 0, result.output
    assert "2 passed" in result.output


def test_server_on_loopback_inside(run) -> None:
    script = (
        "python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 & "
        "for i in $(seq 50); do curl -s -o /dev/null -w 'HTTP %{http_code}\\n' http://127.0.0.1:8765/ && break; sleep 0.1; done"
    )
    result = run(script, timeout=30)
    assert "HTTP 200" in result.output, result.output


def test_many_threads(run) -> None:
    script = (
        "python3 -c 'import threading\n"
        "out = []\n"
        "ts = [threading.Thread(target=lambda i=i: out.append(sum(range(1000 * i)))) for i in range(48)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]; print(\"THREADS\", len(out))'"
    )
    result = run(script)
    assert "THREADS 48" in result.output, result.output


def test_read_system_headers_and_compile(run, repo: Path) -> None:
    if not Path("/usr/include/stdio.h").exists():
        pytest.skip("no system headers on this machine")
    (repo / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("compiled"); return 0; }\n')
    result = run("head -c 200 /usr/include/stdio.h >/dev/null && cc -o hello hello.c && ./hello", timeout=60)
    assert "compiled" in result.output, result.output


@pytest.mark.slow
def test_pip_install_into_repo_venv_with_network(run, repo: Path, pip_index_option: str) -> None:
    """Under workspace-write-network, a tiny pure-Python package installs from the index pip
    is configured with (the same command fails without network: see
    test_pip_install_without_network)."""
    script = (
        "python3 -m venv .venv && .venv/bin/python -m pip install -q --isolated --no-cache-dir"
        f" --cert /etc/ssl/certs/ca-certificates.crt{pip_index_option}"
        " --timeout 30 --retries 2 six && .venv/bin/python -c 'import six; print(\"IMPORTED\", six.__version__)'"
    )
    result = run(script, timeout=240, profile="workspace-write-network")
    assert "IMPORTED" in result.output, result.output
    assert list((repo / ".venv" / "lib").glob("python*/site-packages/six.py"))


def test_pip_install_without_network(run, repo: Path, pip_index_option: str) -> None:
    script = (
        "python3 -m venv --without-pip .venv && python3 -m pip --python .venv/bin/python install -q --isolated"
        f" --no-cache-dir{pip_index_option} --timeout 3 --retries 0 six"
    )
    result = run(script, timeout=120)
    assert result.exit_code != 0
    assert not list((repo / ".venv" / "lib").glob("python*/site-packages/six.py"))


def test_git_worktree_root(tmp_path: Path, repo: Path, planted_home: Path) -> None:
    """A linked worktree (what kcode works in): git works inside, its metadata is read-only."""
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "work", str(worktree))
    sandbox = create_sandbox("workspace-write", worktree)
    result = sandbox.run(
        "echo x > file.txt && git status --short && git diff && git log --oneline -1;"
        " git add file.txt && echo ADDED; git commit -qm sneaky && echo COMMITTED; echo x > $(git rev-parse --git-common-dir)/hooks/pre-commit"
    )
    assert "?? file.txt" in result.output, result.output
    assert "ADDED" not in result.output and "COMMITTED" not in result.output
    assert (worktree / "file.txt").exists()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert git(worktree, "log", "--oneline").count("\n") == 1


def test_output_is_capped_with_dropped_count(repo: Path, planted_home: Path) -> None:
    sandbox = create_sandbox("workspace-write", repo, head_bytes=100, tail_bytes=100)
    result = sandbox.run("head -c 50000 /dev/zero | tr '\\0' a; echo; echo THE-END")
    assert result.dropped_bytes > 49000
    assert result.output.rstrip().endswith("THE-END")
    assert "bytes of output dropped" in result.output


def test_extra_writable_scratch_dir(tmp_path: Path, repo: Path, planted_home: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    sandbox = create_sandbox("read-only", repo, extra_writable=[scratch])
    result = sandbox.run(f"echo note > {scratch}/note.txt && echo x > README.md")
    assert (scratch / "note.txt").read_text() == "note\n"
    assert (repo / "README.md").read_text() == "hello\n"
    assert result.exit_code != 0


def test_off_profile_runs_locally_and_warns_every_time(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    sandbox = create_sandbox("off", repo)
    assert isinstance(sandbox, LocalSandbox)
    with caplog.at_level(logging.WARNING, logger="kcode.sandbox"):
        first = sandbox.run("echo one > /dev/null; echo $$")
        sandbox.run("true")
    assert first.exit_code == 0
    assert sum("sandbox is off" in record.getMessage() for record in caplog.records) == 2


def test_cli_off_profile_warns_on_stderr(repo: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kcode", "sandbox", "exec", "--sandbox", "off", "--repo", str(repo), "--", "sh", "-c", "echo out; exit 3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert "sandbox is off" in done.stderr
