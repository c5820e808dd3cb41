"""A per-command pids cgroup: the process limit that also holds for root.

The kernel never applies RLIMIT_NPROC to uid 0 (in the initial user namespace), and a
sandbox's user namespace maps its uid to the caller's, so a fork bomb run by kcode-as-root
is stopped only by a cgroup's ``pids.max``. When kcode may create cgroups (root, or a
delegated cgroup v2 subtree) each command gets one; otherwise the rlimit is the limit.

The command is moved in by a ``sh`` step before bwrap starts (``echo $$ > cgroup.procs;
exec ...``): no ``preexec_fn`` in a threaded program.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CgroupInfo", "PidsCgroup", "cgroup_info", "pids_parent"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_PREFIX = "kcode-sandbox-"
_counter = itertools.count()


@dataclass(frozen=True)
class CgroupInfo:
    version: str  # "v1", "v2", "hybrid" or "none"
    pids_parent: Path | None  # where kcode can create pids cgroups, if anywhere

    def describe(self) -> str:
        where = f"pids cgroups under {self.pids_parent}" if self.pids_parent else "no writable pids cgroup"
        return f"cgroup {self.version}; {where}"


def _fs_type(path: Path) -> str | None:
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 2 and parts[1] == str(path):
                return parts[2]
    except OSError:
        return None
    return None


def _own_v2_cgroup(mount: Path) -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return mount / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def _writable_pids_dir(parent: Path) -> bool:
    """Whether a child cgroup with a ``pids.max`` can be created (and removed) here."""
    probe = parent / f"{_PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    try:
        return (probe / "pids.max").exists()
    finally:
        try:
            probe.rmdir()
        except OSError:
            pass


def _probe() -> CgroupInfo:
    root_type = _fs_type(_CGROUP_ROOT)
    if root_type == "cgroup2":
        version, v1_pids, v2_mount = "v2", None, _CGROUP_ROOT
    elif root_type == "tmpfs":
        v2_mount = _CGROUP_ROOT / "unified" if _fs_type(_CGROUP_ROOT / "unified") == "cgroup2" else None
        version = "hybrid" if v2_mount else "v1"
        v1_pids = _CGROUP_ROOT / "pids" if _fs_type(_CGROUP_ROOT / "pids") == "cgroup" else None
    else:
        return CgroupInfo("none", None)
    candidates = []
    if v1_pids is not None:
        candidates.append(v1_pids / _own_v1_path(v1_pids))
    if v2_mount is not None:
        own = _own_v2_cgroup(v2_mount)
        if own is not None:
            candidates.append(own)
    for candidate in candidates:
        if candidate.is_dir() and _writable_pids_dir(candidate):
            _remove_stale(candidate)
            return CgroupInfo(version, candidate)
    return CgroupInfo(version, None)


def _remove_stale(parent: Path) -> None:
    """Remove empty cgroups left by kcode processes that died before cleaning up."""
    for child in parent.glob(f"{_PREFIX}*"):
        owner = child.name[len(_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                child.rmdir()
            except OSError:
                pass


def _own_v1_path(mount: Path) -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                return path.lstrip("/")
    except (OSError, ValueError):
        pass
    return ""


_info: CgroupInfo | None = None


def cgroup_info() -> CgroupInfo:
    """The cgroup layout of this machine, probed once per process."""
    global _info
    if _info is None:
        _info = _probe()
    return _info


def pids_parent() -> Path | None:
    return cgroup_info().pids_parent


class PidsCgroup:
    """One command's cgroup: created with a ``pids.max``, emptied and removed afterwards."""

    def __init__(self, parent: Path, max_pids: int) -> None:
        self.path = parent / f"{_PREFIX}{os.getpid()}-{next(_counter)}"
        self.path.mkdir()
        (self.path / "pids.max").write_text(str(max_pids))

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run from inside this cgroup (its descendants stay in it)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs_file), *argv]

    def close(self) -> None:
        """Kill whatever is left in the cgroup and remove it."""
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # left for the next cleanup; never hang the caller
            kill_file = self.path / "cgroup.kill"
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    pass
            else:
                for pid in _pids(self.procs_file):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            time.sleep(0.01)


def _pids(procs_file: Path) -> list[int]:
    try:
        return [int(line) for line in procs_file.read_text().split()]
    except (OSError, ValueError):
        return []
