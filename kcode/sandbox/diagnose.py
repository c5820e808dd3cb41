"""The checks behind ``kcode doctor``: is the sandbox usable here, and what else is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kcode.sandbox._cgroup import cgroup_info
from kcode.sandbox.probe import in_container, probe_bubblewrap

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str
    fix: str = ""


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out else ""


def _sandbox_round_trip(profile: str) -> Check:
    """``true`` through the real sandbox, in a throwaway directory, timed."""
    from kcode.errors import KcodeError
    from kcode.sandbox import create_sandbox

    with tempfile.TemporaryDirectory(prefix="kcode-doctor-") as scratch:
        try:
            sandbox = create_sandbox(profile, Path(scratch))
            started = time.monotonic()
            result = sandbox.run("true", timeout=30)
            elapsed = (time.monotonic() - started) * 1000
        except KcodeError as error:
            return Check("sandboxed command", "fail", str(error).splitlines()[0])
    if result.exit_code != 0:
        return Check("sandboxed command", "fail", f"`true` under {profile!r} failed: {result.describe()}")
    return Check("sandboxed command", "ok", f"`true` under profile {profile!r} in {elapsed:.0f} ms")


def run_checks(profile: str = "workspace-write") -> tuple[list[Check], bool]:
    """Every check, and whether sandboxed commands can run (``kcode doctor``'s exit status)."""
    checks: list[Check] = []
    status = probe_bubblewrap()
    if status.bwrap is None:
        checks.append(Check("bubblewrap", "fail", status.reason, status.fix))
    else:
        checks.append(Check("bubblewrap", "ok", f"{status.bwrap} ({status.version or 'unknown version'})"))
        if status.usable:
            checks.append(Check("user namespaces", "ok", "bwrap created user, pid, net, ipc namespaces and ran `true`"))
        else:
            checks.append(Check("user namespaces", "fail", status.reason, status.fix))
    usable = status.usable
    if usable:
        round_trip = _sandbox_round_trip(profile)
        checks.append(round_trip)
        usable = round_trip.status == "ok"

    prlimit = shutil.which("prlimit")
    checks.append(
        Check("resource limits", "ok", f"prlimit at {prlimit}")
        if prlimit
        else Check("resource limits", "ok", "prlimit missing: limits set with bash's ulimit", "sudo apt-get install -y util-linux")
    )
    info = cgroup_info()
    if os.geteuid() == 0 and info.pids_parent is None:
        checks.append(
            Check(
                "cgroups",
                "warn",
                f"{info.describe()}; running as root, where RLIMIT_NPROC does not apply, so process counts are unlimited",
                "run kcode as a normal user, or give it a writable pids cgroup",
            )
        )
    else:
        how = "pids cgroup per command" if info.pids_parent else "RLIMIT_NPROC"
        checks.append(Check("cgroups", "ok", f"{info.describe()}; process limit by {how}"))
    if in_container():
        checks.append(Check("container", "ok", "running inside a container: the container is a second boundary"))
    rg = shutil.which("rg")
    checks.append(
        Check("ripgrep", "ok", f"{rg} ({_version([rg, '--version'])})")
        if rg
        else Check("ripgrep", "warn", "rg not found (kcode's code search uses ripgrep)", "sudo apt-get install -y ripgrep")
    )
    return checks, usable
