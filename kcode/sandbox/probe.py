"""Can bubblewrap sandbox commands here? Try it, and when not, say exactly how to fix it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["BubblewrapStatus", "probe_bubblewrap", "in_container"]

_INSTALL_FIX = "sudo apt-get install -y bubblewrap   (Fedora: sudo dnf install bubblewrap; Arch: sudo pacman -S bubblewrap)"

_APPARMOR_FIX = """Ubuntu 23.10+ (AppArmor) blocks unprivileged user namespaces. Either allow them:
    sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
    echo 'kernel.apparmor_restrict_unprivileged_userns = 0' | sudo tee /etc/sysctl.d/60-userns.conf
or keep the restriction and let only bwrap create namespaces:
    sudo tee /etc/apparmor.d/bwrap <<'EOF'
abi <abi/4.0>,
include <tunables/global>
profile bwrap /usr/bin/bwrap flags=(unconfined) {
  userns,
  include if exists <local/bwrap>
}
EOF
    sudo apparmor_parser -r /etc/apparmor.d/bwrap"""

_CONTAINER_FIX = """Inside a container the default seccomp and AppArmor profiles block the namespaces bwrap
needs. Either start the container with
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
or make the container itself the boundary and run kcode with --sandbox off."""


@dataclass(frozen=True)
class BubblewrapStatus:
    usable: bool
    bwrap: str | None  # path of the executable, when installed
    version: str
    reason: str  # why it is not usable ("" when it is)
    fix: str  # the exact fix ("" when usable)

    def message(self) -> str:
        return f"{self.reason}\nFix: {self.fix}" if self.fix else self.reason


def in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        return any(word in Path("/proc/1/cgroup").read_text() for word in ("docker", "kubepods", "containerd"))
    except OSError:
        return False


def _read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _namespace_fix() -> str:
    if _read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return _APPARMOR_FIX
    if _read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "sudo sysctl -w kernel.unprivileged_userns_clone=1   (persist it in /etc/sysctl.d/)"
    if _read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        return "sudo sysctl -w user.max_user_namespaces=15000   (persist it in /etc/sysctl.d/)"
    if in_container():
        return _CONTAINER_FIX
    return "enable unprivileged user namespaces in the kernel (CONFIG_USER_NS) or run kcode with --sandbox off inside a disposable VM"


@lru_cache(maxsize=4)
def probe_bubblewrap(bwrap: str | None = None) -> BubblewrapStatus:
    """Run ``true`` under bwrap with the namespaces the sandbox uses (cached per process)."""
    path = bwrap or shutil.which("bwrap")
    if path is None:
        return BubblewrapStatus(False, None, "", "bubblewrap (bwrap) is not installed", _INSTALL_FIX)
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        return BubblewrapStatus(False, path, "", f"cannot run {path}: {error}", _INSTALL_FIX)
    from kcode.sandbox.bwrap import bwrap_features

    argv = [path, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc"]
    if "--disable-userns" in bwrap_features(path):
        argv.append("--disable-userns")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    argv += ["--new-session", "--die-with-parent", "--as-pid-1", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as error:
        return BubblewrapStatus(False, path, version, f"bwrap failed to start: {error}", _namespace_fix())
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        return BubblewrapStatus(
            False, path, version, f"bwrap cannot create the sandbox's namespaces: {detail}", _namespace_fix()
        )
    return BubblewrapStatus(True, path, version, "", "")
