"""The bubblewrap sandbox: every command in fresh namespaces with a read-only host.

Mount layout, in order (later mounts shadow earlier ones):

1. the host's ``/`` read-only, a minimal ``/dev``, a fresh ``/proc``, a private ``/tmp``;
2. hidden paths (``/home``, ``/root``, the caller's ``$HOME``, runtime sockets) behind empty
   tmpfs directories (or ``/dev/null`` for files): hiding is by mount, so it holds for root;
3. the repository (read-write, or read-only for the ``read-only`` mode) and extra writable
   paths; hidden paths inside them are hidden again. A work tree is mounted at the user's
   checkout's path (see :mod:`kcode.sandbox.project`), with the checkout's ignored build
   inputs shown read-only at their own paths;
4. toolchain directories under a hidden home (``~/.pyenv``, ``$PATH`` entries) read-only;
5. the repository's git metadata (``.git``, a worktree's git dir and common dir) and
   ``.kcode`` read-only: kcode commits outside the sandbox and must not run hooks or read
   profiles that a command wrote. When the work tree is mounted at the checkout's path, the
   common dir (the checkout's ``.git``, shadowed there) is mounted at ``/tmp/.kcode-git`` and
   a one-line ``.git`` file points git at the work tree's git dir under it.

Namespaces: user (uid kept, all capabilities dropped, no nested user namespaces), pid (the
command is pid 1, so neither kcode nor bwrap is visible or traceable from inside; when it
exits everything left in the namespace dies), ipc, uts, cgroup, and network unless the
policy allows it (loopback inside works). Limits are set by ``prlimit`` exec'd inside the
sandbox, never by ``preexec_fn``; as root the process limit is a pids cgroup (see
``_cgroup``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import pwd
import resource
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kcode.cancel import CancelToken
from kcode.errors import SandboxError
from kcode.sandbox._cgroup import PidsCgroup, pids_parent
from kcode.sandbox._environment import filter_environment
from kcode.sandbox._process import run_process
from kcode.sandbox.base import ExecResult
from kcode.sandbox.local import NONINTERACTIVE_ENV, command_argv
from kcode.sandbox.policy import Limits, SandboxPolicy
from kcode.sandbox.project import ProjectView, prepend_path

__all__ = ["BubblewrapSandbox", "bwrap_features", "limit_wrapper"]

log = logging.getLogger(__name__)

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FALLBACK_HOME = "/tmp/home"
_GIT_INSIDE = Path("/tmp/.kcode-git")  # the common git dir, when the checkout's path is taken


@lru_cache(maxsize=8)
def bwrap_features(bwrap: str) -> frozenset[str]:
    """The optional flags this bwrap understands (``--disable-userns`` needs 0.8)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(flag for flag in ("--disable-userns", "--size", "--unshare-cgroup-try") if flag in text)


def _clamp(value: int | None, which: int) -> int | None:
    """A limit no higher than the current hard limit (raising it would need privileges)."""
    if value is None:
        return None
    _, hard = resource.getrlimit(which)
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def limit_wrapper(limits: Limits, *, prlimit: str | None) -> list[str]:
    """The argv prefix that applies ``limits`` and then execs the command.

    ``prlimit`` (util-linux) when available, else ``bash``'s ``ulimit`` builtin.
    """
    values = {
        "as": _clamp(limits.address_space, resource.RLIMIT_AS),
        "nproc": _clamp(limits.processes, resource.RLIMIT_NPROC),
        "fsize": _clamp(limits.file_size, resource.RLIMIT_FSIZE),
        "cpu": _clamp(limits.cpu_time, resource.RLIMIT_CPU),
        "nofile": _clamp(limits.open_files, resource.RLIMIT_NOFILE),
        "core": 0,  # a crashing process must not drop a core file the size of its memory
    }
    if prlimit is not None:
        return [prlimit, *(f"--{name}={value}" for name, value in values.items() if value is not None), "--"]
    # bash units: -v KiB, -f KiB (1024-byte blocks outside POSIX mode), -t seconds.
    flags = {"as": ("-v", 1024), "nproc": ("-u", 1), "fsize": ("-f", 1024), "cpu": ("-t", 1),
             "nofile": ("-n", 1), "core": ("-c", 1)}  # fmt: skip
    script = " && ".join(
        f"ulimit -S -H {flags[name][0]} {value // flags[name][1]}"
        for name, value in values.items()
        if value is not None
    )
    return ["/bin/bash", "-c", f'{script} && exec "$@"', "kcode-limits"]


def _host_home(environ: Mapping[str, str]) -> Path | None:
    home = environ.get("HOME")
    return Path(home) if home else _passwd_home()


def _passwd_home() -> Path | None:
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None


def _expand(path: str, *, home: Path | None, base: Path) -> Path:
    if path == "~" or path.startswith("~/"):
        if home is None:
            raise SandboxError(f"cannot expand {path!r}: no home directory")
        return home / path[2:]
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base / candidate


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


@dataclass(frozen=True)
class _GitLayout:
    """Where a work tree's git metadata is: ``.git`` (a directory, or a file naming
    ``git_dir``) and, for a linked worktree, the repository's ``common_dir``."""

    dot_git: Path
    git_dir: Path | None = None
    common_dir: Path | None = None

    def protected(self) -> list[Path]:
        """The paths a command must see but not change (the common dir usually contains
        the worktree's git dir)."""
        paths = [self.dot_git] + [p for p in (self.git_dir,) if p is not None]
        if self.common_dir is not None:
            paths = [p for p in paths if not _inside(p, self.common_dir)] + [self.common_dir]
        return paths


def _git_layout(root: Path) -> _GitLayout | None:
    """The nearest ``.git``, walking up from ``root``."""
    for directory in (root, *root.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return _GitLayout(dot_git)
        if dot_git.is_file():
            try:
                text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                return _GitLayout(dot_git)
            if not text.startswith("gitdir:"):
                return _GitLayout(dot_git)
            git_dir = (directory / text[len("gitdir:") :].strip()).resolve()
            if not git_dir.is_dir():
                return _GitLayout(dot_git)
            common_file = git_dir / "commondir"
            common_dir = (git_dir / common_file.read_text().strip()).resolve() if common_file.is_file() else None
            return _GitLayout(dot_git, git_dir, common_dir if common_dir is not None and common_dir.is_dir() else None)
    return None


class BubblewrapSandbox:
    """Runs commands under ``bwrap`` with the mounts, namespaces and limits of a policy."""

    def __init__(
        self,
        policy: SandboxPolicy,
        root: Path,
        *,
        extra_writable: Iterable[Path] = (),
        environ: Mapping[str, str] | None = None,
        bwrap: str | None = None,
        prlimit: str | None = None,
        head_bytes: int = 5000,
        tail_bytes: int = 5000,
        view: ProjectView | None = None,
    ) -> None:
        if policy.mode == "off":
            raise SandboxError(f"profile {policy.name!r} has mode 'off': use LocalSandbox")
        self.policy = policy
        self.name = policy.name
        self.root = Path(root).resolve()
        if self.root == Path("/"):
            raise SandboxError("refusing to sandbox with / as the writable repository root")
        if not self.root.is_dir():
            raise SandboxError(f"repository root {self.root} is not a directory")
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise SandboxError("bubblewrap (bwrap) is not installed. Fix: sudo apt-get install -y bubblewrap")
        self._bwrap = found
        self._features = bwrap_features(found)
        self._head = head_bytes
        self._tail = tail_bytes
        host_env = dict(os.environ if environ is None else environ)
        self._host_home = _host_home(host_env)
        self.view = view
        # where commands see the files: the checkout's path for a work tree, else the root
        self.inside_root = view.checkout if view is not None and view.files == self.root else self.root
        if view is not None and view.files != self.root:
            raise SandboxError(f"project view is for {view.files}, not {self.root}")

        self._given = dict(extra_writable=list(extra_writable), environ=environ, bwrap=bwrap, prlimit=prlimit, head_bytes=head_bytes, tail_bytes=tail_bytes, view=view)
        self.writable = [self.inside_root] + self._writable_paths(extra_writable)
        hidden = self._hidden_paths()
        self.home = self._inside_home(hidden)
        self._base_env = self._environment(host_env)
        self._mounts = self._mount_args(hidden)
        prlimit_path = prlimit if prlimit is not None else shutil.which("prlimit")
        self._limits = limit_wrapper(policy.limits, prlimit=prlimit_path)
        # RLIMIT_NPROC holds for everyone but root; only root needs (and pays for) a cgroup.
        self._pids_parent = pids_parent() if policy.limits.processes and os.geteuid() == 0 else None

    # -- grants (approvals: kcode.tools.shell) -------------------------------------------

    def not_writable(self, paths: Iterable[str | Path]) -> list[Path]:
        """Of ``paths`` (as commands see them; relative: to the repository), those commands
        may not write: outside the repository, the private /tmp and home, the writable extras."""
        allowed = [*self.writable, Path("/tmp"), self.home]
        out = []
        for entry in paths:
            path = Path(os.path.normpath(self.inside_root / Path(entry).expanduser()))
            if not any(path == base or _inside(path, base) for base in allowed):
                out.append(path)
        return out

    def granted(self, *, network: bool = False, writable: Iterable[Path] = ()) -> BubblewrapSandbox:
        """This sandbox with the network on and/or more host paths writable (each path, or
        its nearest existing parent for one still to be made)."""
        extra = [self._existing(Path(path)) for path in writable]
        policy = dataclasses.replace(self.policy, network=self.policy.network or network)
        return BubblewrapSandbox(policy, self.root, **{**self._given, "extra_writable": [*self._given["extra_writable"], *extra]})

    @staticmethod
    def _existing(path: Path) -> Path:
        while not path.exists() and path != path.parent:
            path = path.parent
        return path

    # -- layout ---------------------------------------------------------------------------

    def _writable_paths(self, extra: Iterable[Path]) -> list[Path]:
        paths: list[Path] = []
        for entry in self.policy.writable:
            path = _expand(entry, home=self._host_home, base=self.root).resolve()
            if path.exists():
                paths.append(path)
            else:
                log.warning("sandbox profile %s: writable path %s does not exist; skipped", self.name, path)
        for entry in extra:
            path = Path(entry).resolve()
            if not path.exists():
                raise SandboxError(f"writable path {path} does not exist")
            paths.append(path)
        for path in paths:
            if path == Path("/"):
                raise SandboxError("refusing to make / writable inside the sandbox")
        return paths

    def _hidden_paths(self) -> list[Path]:
        """Existing host paths to hide, parents before children, /tmp's already private."""
        candidates = [Path(p) for p in self.policy.hidden]
        if self._host_home is not None:
            candidates.append(self._host_home)
        hidden: set[Path] = set()
        for path in candidates:
            if not path.is_absolute() or not os.path.lexists(path):
                continue
            real = Path(os.path.realpath(path))
            if real == Path("/") or _inside(real, Path("/tmp")):
                continue
            # A writable path's ancestor is hidden too: the writable path is bound after it.
            hidden.add(real)
        return sorted(hidden, key=lambda p: len(p.parts))

    def _inside_home(self, hidden: list[Path]) -> Path:
        home = self._host_home
        if home is not None and home.is_dir() and not any(_inside(home, w) for w in self.writable):
            real = Path(os.path.realpath(home))
            if real in hidden or _inside(real, Path("/tmp")):
                return real
        return Path(_FALLBACK_HOME)

    def _environment(self, host_env: Mapping[str, str]) -> dict[str, str]:
        env = filter_environment(host_env, self.policy.env_allow)
        env.setdefault("PATH", _DEFAULT_PATH)
        if self.view is not None and self.view.path_prefix:
            # The project's environment first, whatever a launcher (a pyenv shim) put first.
            env["PATH"] = prepend_path(env["PATH"], self.view.path_prefix)
            if self.view.environment_source == "CONDA_PREFIX":
                env["CONDA_PREFIX"] = str(self.view.environment)
            else:
                env["VIRTUAL_ENV"] = str(self.view.environment)
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
        env.setdefault("USER", user)
        env.setdefault("LOGNAME", user)
        env.update(NONINTERACTIVE_ENV)
        env.update({"HOME": str(self.home), "TMPDIR": "/tmp"})
        env.update(self.policy.env_set)
        return env

    def _readable_paths(self, hidden: list[Path]) -> list[Path]:
        """Toolchain paths under a hidden directory, to show again read-only."""
        # "~" means both $HOME and the account's home from passwd: with $HOME pointed
        # elsewhere, the toolchains on $PATH still live in the account's home.
        homes = {h for h in (self._host_home, _passwd_home()) if h is not None}
        entries = [_expand(p, home=h, base=self.root) for p in self.policy.readable for h in homes]
        entries += [Path(p) for p in self._base_env.get("PATH", "").split(":") if p.startswith("/")]
        venv = self._base_env.get("VIRTUAL_ENV")
        if venv:
            entries.append(Path(venv))
        covered = [*hidden, Path("/tmp")]
        readable: list[Path] = []
        for path in entries:
            if not path.is_dir() or not any(_inside(path, h) for h in covered):
                continue
            if any(_inside(path, w) for w in self.writable) or any(_inside(path, r) for r in readable):
                continue
            readable = [r for r in readable if not _inside(r, path)] + [path]
        return sorted(readable, key=lambda p: len(p.parts))

    def _tmpfs(self, path: Path) -> list[str]:
        size = self.policy.limits.tmp_size
        prefix = ["--size", str(size)] if size and "--size" in self._features else []
        return [*prefix, "--tmpfs", str(path)]

    def _hide(self, path: Path) -> list[str]:
        if path.is_dir() and not path.is_symlink():
            return self._tmpfs(path)
        return ["--ro-bind", "/dev/null", str(path)]

    def _mount_args(self, hidden: list[Path]) -> list[str]:
        args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *self._tmpfs(Path("/tmp"))]
        inside_writable = [h for h in hidden if any(_inside(h, w) for w in self.writable)]
        for path in hidden:
            if path not in inside_writable:
                args += self._hide(path)
        if self.home not in hidden:
            args += ["--dir", str(self.home)]
        repo_bind = "--ro-bind" if self.policy.mode == "read-only" else "--bind"
        args += [repo_bind, str(self.root), str(self.inside_root)]
        if self.view is not None:
            for relative in self.view.shown:  # the checkout's ignored build inputs
                path = self.inside_root / relative.rstrip("/")
                args += ["--ro-bind", str(path), str(path)]  # sources come from the host's view
        for path in self.writable[1:]:
            args += ["--bind", str(path), str(path)]
        for path in inside_writable:
            args += self._hide(path)
        for path in self._readable_paths(hidden):
            args += ["--ro-bind", str(path), str(path)]
        kcode_dir = self.root / ".kcode"
        if self.policy.mode != "read-only" and not kcode_dir.exists():
            # An empty directory to mount over, so a command cannot create .kcode/ and plant
            # a sandbox profile or config that kcode would read on its next run.
            kcode_dir.mkdir()
        protected = self._git_mounts(_git_layout(self.root))
        if kcode_dir.is_dir():
            protected.append((kcode_dir, self.inside_root / ".kcode"))
        for source, target in protected:
            args += ["--ro-bind", str(source), str(target)]
        return args

    def _git_mounts(self, layout: _GitLayout | None) -> list[tuple[Path, Path]]:
        """Git metadata to mount read-only, as (host path, path inside). A work tree mounted at
        the checkout's path has a ``.git`` file pointing into the checkout's ``.git``, which the
        mount shadows: the common dir then moves to ``/tmp/.kcode-git`` and a ``.git`` file
        points there."""
        if layout is None:
            return []
        shadowed = (
            self.inside_root != self.root
            and layout.git_dir is not None
            and layout.common_dir is not None
            and _inside(layout.common_dir, self.inside_root)
            and _inside(layout.git_dir, layout.common_dir)
        )
        if not shadowed:
            return [(path, self._inside(path)) for path in layout.protected()]
        assert layout.git_dir is not None and layout.common_dir is not None
        pointer = self._git_pointer(_GIT_INSIDE / layout.git_dir.relative_to(layout.common_dir))
        return [(layout.common_dir, _GIT_INSIDE), (pointer, self.inside_root / ".git")]

    def _git_pointer(self, git_dir: Path) -> Path:
        """A host file holding ``gitdir: <git_dir>``, in kcode's data dir, to mount as ``.git``."""
        from kcode.paths import data_dir

        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        pointer = data_dir() / "gitfiles" / f"{self.root.name}-{digest}"
        text = f"gitdir: {git_dir}\n"
        try:
            if not pointer.is_file() or pointer.read_text(encoding="utf-8") != text:
                pointer.parent.mkdir(parents=True, exist_ok=True)
                pointer.write_text(text, encoding="utf-8")
        except OSError as error:
            raise SandboxError(f"cannot write the work tree's git pointer {pointer}: {error}") from error
        return pointer

    def _inside(self, host_path: Path) -> Path:
        """Where a path under the work tree appears to commands."""
        if _inside(host_path, self.root):
            return self.inside_root / host_path.relative_to(self.root)
        return host_path

    def _namespace_args(self) -> list[str]:
        args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if "--unshare-cgroup-try" in self._features:
            args.append("--unshare-cgroup-try")
        if "--disable-userns" in self._features:
            args.append("--disable-userns")
        if not self.policy.network:
            args.append("--unshare-net")
        args += ["--new-session", "--die-with-parent", "--as-pid-1"]
        if os.geteuid() == 0:
            args += ["--cap-drop", "ALL"]
        return args

    # -- running --------------------------------------------------------------------------

    def command(
        self,
        command: str | Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """The full ``bwrap`` argv and the environment to start it with."""
        workdir = self._inside(Path(cwd).resolve()) if cwd is not None else self.inside_root
        argv = [
            self._bwrap,
            *self._namespace_args(),
            *self._mounts,
            "--chdir",
            str(workdir),
            "--",
            *self._limits,
            *command_argv(command),
        ]
        return argv, {**self._base_env, **(env or {})}

    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = 120.0,
        env: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> ExecResult:
        argv, full_env = self.command(command, cwd=cwd, env=env)
        cgroup = None
        if self._pids_parent is not None and self.policy.limits.processes:
            try:
                cgroup = PidsCgroup(self._pids_parent, self.policy.limits.processes)
            except OSError as error:
                log.warning("could not create a pids cgroup (%s); relying on RLIMIT_NPROC", error)
        try:
            return run_process(
                cgroup.wrap(argv) if cgroup else argv,
                cwd=self.root,
                env=full_env,
                timeout=timeout,
                cancel=cancel,
                head_bytes=self._head,
                tail_bytes=self._tail,
                on_output=on_output,
            )
        finally:
            if cgroup is not None:
                cgroup.close()
