"""What a sandboxed command sees of the user's project: the work tree at the checkout's path,
the project's environment first on ``PATH``, and the checkout's ignored build inputs.

A work tree lives under kcode's data directory, but the user's tools point at the checkout:
an editable install's ``.pth`` file or ``__editable__`` finder, a console script's shebang, a
config file with an absolute path. So the sandbox mounts the work tree *at the checkout's
path* (the checkout itself is hidden there, never touched), and everything that refers to
the checkout finds the agent's edits.

The project's environment is, in order: an active ``VIRTUAL_ENV`` or ``CONDA_PREFIX`` (unless
it is the environment kcode itself runs from and the repository has its own), else a
virtualenv inside the checkout (``.venv/``, ``venv/``: a directory with ``pyvenv.cfg``). Its
``bin/`` goes first on the sandbox's ``PATH``, whatever a launcher (a pyenv shim) did to
``PATH`` before kcode started.

Files the checkout ignores are absent from a work tree (git does not copy them). Those that a
command may need — a virtualenv, ``node_modules/``, compiled extensions and generated code
in place — are shown read-only from the checkout at their own paths; caches and build output
directories are not. Nothing is copied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from kcode.vcs.workspace import environment_dirs

__all__ = ["ProjectView", "discover_project", "environment_line", "shown_line", "prepend_path", "MAX_SHOWN"]

MAX_SHOWN = 200  # ignored entries shown from the checkout; past this the rest are listed as left out

# Ignored entries never shown from the checkout: caches that commands rewrite, build output
# directories (a rebuild must be able to write them), editor state, kcode's own directory.
_NOT_SHOWN = (
    "__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    ".hypothesis", ".tox", ".nox", ".coverage", ".coverage.*", "htmlcov", ".cache",
    "build", "dist", ".eggs", ".kcode", ".idea", ".vscode", "*.swp", "*~", ".DS_Store",
    ".ipynb_checkpoints", "*.log", "coverage.xml", "junit*.xml", "wheelhouse",
    # likely credentials: never shown, even read-only
    ".env", ".env.*", "*.pem", "*.key", ".netrc", ".npmrc", ".pypirc", ".git-credentials",
    "id_rsa*", "id_ed25519*", "*.p12", "*.pfx", "*secret*", "*credential*",
)  # fmt: skip
_VENV_NAMES = (".venv", "venv")


@dataclass(frozen=True)
class ProjectView:
    """How commands see the project; built by :func:`discover_project`."""

    checkout: Path  # the user's checkout: the path commands see the files at
    files: Path  # where the files are (the work tree; the checkout itself in place)
    environment: Path | None = None  # the project's venv or conda prefix
    environment_source: str = ""  # "VIRTUAL_ENV", "CONDA_PREFIX", ".venv in the repository", ...
    python: str | None = None  # the interpreter `python` resolves to inside
    python_version: str = ""
    shown: tuple[str, ...] = ()  # ignored paths (relative, "/" ending a directory) shown read-only
    left_out: int = 0  # ignored entries past MAX_SHOWN
    path_prefix: tuple[str, ...] = field(default=())  # put first on PATH

    @property
    def remapped(self) -> bool:
        """Whether the files are mounted somewhere other than where they are."""
        return self.files != self.checkout

    def environment_line(self) -> str:
        """One line for the run header and ``kcode doctor``."""
        return environment_line(self.python, self.python_version, self.environment, self.environment_source)


def environment_line(python: str | None, version: str, environment: Path | str | None, source: str) -> str:
    shown = (python or "none found") + (f" ({version})" if version else "")
    where = f"{environment} ({source})" if environment else "no virtualenv (the PATH's own)"
    return f"python {shown} · environment {where}"


def shown_line(shown: list[str] | tuple[str, ...], left_out: int) -> str:
    """What of the checkout's ignored files commands see read-only, in one line ("" for none)."""
    if not shown:
        return ""
    names = ", ".join(shown[:6]) + (f", … ({len(shown)} in all)" if len(shown) > 6 else "")
    more = f"; {left_out} more not shown" if left_out else ""
    return f"read-only from your checkout (ignored there): {names}{more}"


def prepend_path(path: str, first: tuple[str, ...] | list[str]) -> str:
    """``path`` (a ``PATH`` value) with ``first`` in front and not again later."""
    return ":".join([*first, *(entry for entry in path.split(":") if entry and entry not in first)])


def _is_venv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file() and (path / "bin").is_dir()


def _own_prefix() -> Path:
    return Path(sys.prefix).resolve()


def _environment(checkout: Path, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    in_repo = next((checkout / name for name in _VENV_NAMES if _is_venv(checkout / name)), None)
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        value = environ.get(variable)
        if not value or not Path(value).is_dir():
            continue
        path = Path(value)
        # kcode installed in a venv the user activated to run it: the repository's own wins.
        if in_repo is not None and path.resolve() == _own_prefix() and path.resolve() != in_repo.resolve():
            continue
        return path, variable
    if in_repo is not None:
        return in_repo, f"{in_repo.name}/ in the repository"
    return None, ""


# interpreter (its resolved path, size and change time; the directory and PYENV_VERSION a
# pyenv shim would read) -> its version: asked once per process (a swarm's sub-agents each
# discover the same project)
_VERSIONS: dict[tuple, str] = {}


def _python_version(python: str) -> str:
    try:
        real = os.path.realpath(python)
        stat = os.stat(real)
        key = (real, stat.st_size, stat.st_mtime_ns, os.getcwd(), os.environ.get("PYENV_VERSION"))
    except OSError:
        return _ask_python_version(python)
    version = _VERSIONS.get(key)
    if version is None:
        version = _ask_python_version(python)
        if version:
            _VERSIONS[key] = version
    return version


def _ask_python_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=15)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _not_shown(relative: str) -> bool:
    parts = relative.rstrip("/").split("/")
    return any(fnmatchcase(part, pattern) for part in parts for pattern in _NOT_SHOWN)


def ignored_inputs(checkout: Path, files: Path | None = None) -> tuple[list[str], int]:
    """Ignored entries of ``checkout`` (directories collapsed, ending in "/") that commands may
    need and the work tree at ``files`` (None: any work tree) lacks, and how many were left
    out past MAX_SHOWN."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory", "--no-empty-directory"],
            cwd=checkout, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return [], 0
    entries = []
    for raw in out.split(b"\0"):
        relative = os.fsdecode(raw)
        if not relative or _not_shown(relative):
            continue
        if files is not None and os.path.lexists(files / relative.rstrip("/")):
            continue  # the work tree has it (an untracked, not ignored, parent was copied)
        source = checkout / relative.rstrip("/")
        if source.is_symlink() and not source.exists():
            continue
        entries.append(relative)
    for name in environment_dirs(checkout):  # not ignored, but never in a work tree
        if f"{name}/" not in entries and (files is None or not os.path.lexists(files / name / "pyvenv.cfg")):
            entries.append(f"{name}/")
    entries.sort()
    return entries[:MAX_SHOWN], max(0, len(entries) - MAX_SHOWN)



def discover_project(checkout: Path, files: Path | None = None, environ: Mapping[str, str] | None = None) -> ProjectView:
    """How commands in ``files`` (default: the checkout itself) see the project at ``checkout``."""
    checkout = Path(checkout).resolve()
    files = Path(files).resolve() if files is not None else checkout
    env = os.environ if environ is None else environ
    environment, source = _environment(checkout, env)
    prefix = (str(environment / "bin"),) if environment is not None and (environment / "bin").is_dir() else ()
    shown, left_out = ignored_inputs(checkout, files) if files != checkout else ([], 0)
    search_path = os.pathsep.join([*prefix, env.get("PATH", os.defpath)])
    python = shutil.which("python", path=search_path) or shutil.which("python3", path=search_path)
    return ProjectView(
        checkout=checkout,
        files=files,
        environment=environment,
        environment_source=source,
        python=python,
        python_version=_python_version(python) if python else "",
        shown=tuple(shown),
        left_out=left_out,
        path_prefix=prefix,
    )
