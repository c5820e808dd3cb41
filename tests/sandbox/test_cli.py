"""``kcode doctor`` and ``kcode sandbox exec`` as a user runs them: the real executable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kcode.sandbox import probe_bubblewrap
from tests.sandbox.conftest import requires_bwrap

KCODE = [sys.executable, "-m", "kcode"]


def kcode(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*KCODE, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@requires_bwrap
def test_doctor_reports_a_usable_sandbox() -> None:
    done = kcode("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("[ok  ] bubblewrap: ") and "bubblewrap" in line for line in lines)
    assert any(line.startswith("[ok  ] user namespaces:") for line in lines)
    assert any(line.startswith("[ok  ] sandboxed command: `true` under profile 'workspace-write' in ") for line in lines)
    assert any(line.startswith("[") and "cgroups: cgroup " in line for line in lines)
    assert any("ripgrep:" in line for line in lines)
    assert lines[-1] == "Sandbox: usable."


def _env_without_bwrap(tmp_path: Path) -> dict[str, str]:
    """A PATH with the basic tools but no bwrap (a machine where it is not installed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "git", "true", "prlimit"):
        for directory in ("/usr/bin", "/bin"):
            if Path(directory, tool).exists():
                (bin_dir / tool).symlink_to(Path(directory, tool))
                break
    return {**os.environ, "PATH": str(bin_dir)}


def test_doctor_without_bubblewrap_gives_the_fix(tmp_path: Path) -> None:
    done = kcode("doctor", env=_env_without_bwrap(tmp_path))
    assert done.returncode == 1
    assert "[FAIL] bubblewrap: bubblewrap (bwrap) is not installed" in done.stdout
    assert "fix: sudo apt-get install -y bubblewrap" in done.stdout
    assert "Sandbox: NOT usable" in done.stdout


def test_exec_refuses_to_run_without_bubblewrap(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = kcode("sandbox", "exec", "--repo", str(tmp_path), "--", "touch", str(marker), env=_env_without_bwrap(tmp_path))
    assert done.returncode == 125
    assert "bubblewrap (bwrap) is not installed" in done.stderr
    assert "apt-get install -y bubblewrap" in done.stderr
    assert "--sandbox off" in done.stderr
    assert not marker.exists()  # never a silent fallback


def test_probe_explains_a_bwrap_that_cannot_create_namespaces() -> None:
    status = probe_bubblewrap("/bin/false")  # installed but failing, like a blocked userns
    assert not status.usable
    assert "cannot create the sandbox's namespaces" in status.reason
    assert status.fix  # a concrete next step, whatever this machine's cause


@requires_bwrap
def test_exec_streams_output_and_returns_the_exit_code(tmp_path: Path) -> None:
    done = kcode("sandbox", "exec", "--repo", str(tmp_path), "--", "bash", "-c", "echo out; echo err >&2; exit 7")
    assert done.returncode == 7
    assert done.stdout == "out\nerr\n"  # stdout and stderr merged, in order


@requires_bwrap
def test_exec_timeout_and_unknown_profile(tmp_path: Path) -> None:
    timed = kcode("sandbox", "exec", "--repo", str(tmp_path), "--timeout", "1", "--", "sleep", "30")
    assert timed.returncode == 124
    assert "timed out" in timed.stderr
    unknown = kcode("sandbox", "exec", "--sandbox", "nope", "--repo", str(tmp_path), "--", "true")
    assert unknown.returncode == 2
    assert "unknown sandbox profile 'nope'" in unknown.stderr


@requires_bwrap
def test_exec_uses_the_configured_profile(tmp_path: Path) -> None:
    (tmp_path / ".kcode").mkdir()
    (tmp_path / ".kcode" / "config.toml").write_text('sandbox = "read-only"\n')
    done = kcode("sandbox", "exec", "--repo", str(tmp_path), "--", "touch", "x")
    assert done.returncode != 0
    assert "Read-only file system" in done.stdout
    assert not (tmp_path / "x").exists()


def test_profiles_lists_builtin_and_project_profiles(tmp_path: Path) -> None:
    (tmp_path / ".kcode" / "sandbox").mkdir(parents=True)
    (tmp_path / ".kcode" / "sandbox" / "ci.toml").write_text('extends = "workspace-write-network"\ndescription = "CI runs"\n')
    done = kcode("sandbox", "profiles", "--repo", str(tmp_path))
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == ["ci", "off", "read-only", "workspace-write", "workspace-write-network"]
    assert "CI runs" in done.stdout
