"""Grading environments: one virtual environment per (repository, version), cached.

An environment lives in ``<cache>/evals/envs/<owner>__<name>-<version>/``: ``venv/`` (built
with the spec's Python, its packages and pip_packages, the repository's requirements files
and its build requirements), ``testbed/`` (the checkout the repository's own install binds
the venv to, like the official ``/testbed``) and ``env.json`` (what it was built from). A
lock per environment: two workers grade different environments at once and the same one in
turn. Building needs the network (PyPI); grading in a built environment does not.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kcode import paths
from kcode.errors import KcodeError

__all__ = [
    "Env", "EnvError", "EnvStats", "PythonNotFound", "download_build_requires", "ensure_env", "env_lock", "find_python", "missing_requirements", "offline_install", "top_up",
]


class EnvError(KcodeError):
    """An environment could not be built; the message says which step failed."""


class PythonNotFound(EnvError):
    """No interpreter of the version a spec asks for."""


@dataclass
class EnvStats:
    """How many environments a run built and how many it reused (the cache's hit count)."""

    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, key: str, built: bool) -> None:
        with self._lock:
            (self.built if built else self.reused).append(key)

    def as_dict(self) -> dict:
        return {"built": len(self.built), "reused": len(self.reused), "envs": sorted(set(self.built) | set(self.reused))}


@dataclass
class Env:
    key: str
    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def wheels(self) -> Path:
        """The build requirements, so installs after the build need no network."""
        return self.root / "wheels"

    @property
    def testbed(self) -> Path:
        return self.root / "testbed"


def _candidates(version: str) -> Iterator[Path]:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        found = [p for p in pyenv.glob(f"{version}.*") if re.fullmatch(re.escape(version) + r"\.\d+", p.name)]
        for entry in sorted(found, key=lambda p: int(p.name.rsplit(".", 1)[1]), reverse=True):
            yield entry / "bin" / f"python{version}"
    uv = Path(os.environ.get("UV_PYTHON_INSTALL_DIR", Path.home() / ".local/share/uv/python"))
    if uv.is_dir():
        for entry in sorted(uv.glob(f"cpython-{version}.*"), reverse=True):
            yield entry / "bin" / f"python{version}"
    on_path = shutil.which(f"python{version}")
    if on_path:
        yield Path(on_path)


@lru_cache(maxsize=32)
def find_python(version: str) -> Path:
    """An interpreter of ``version`` ("3.9"): pyenv's, uv's, then ``pythonX.Y`` on PATH."""
    if not re.fullmatch(r"\d+\.\d+", version):
        raise PythonNotFound(f"python version must look like 3.9, got {version!r}")
    for path in _candidates(version):
        if not path.is_file():
            continue
        try:
            out = subprocess.run([str(path), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return path
    raise PythonNotFound(f"python {version} not available (looked in pyenv, uv-managed interpreters and PATH): install it, e.g. `pyenv install {version}`")


@contextmanager
def env_lock(root: Path) -> Iterator[None]:
    """Holds the environment's lock (a flock: across threads and processes)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def envs_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or paths.cache_dir()) / "evals" / "envs"


def fingerprint(python: str, packages: list[str], requirements: str, build_requires: list[str]) -> str:
    text = json.dumps([python, packages, requirements, build_requires])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_env(
    key: str,
    python: str,
    packages: list[str],
    *,
    source: Path,
    requirements_paths: list[str] = (),  # type: ignore[assignment]
    install: str = "",
    extra_env: dict[str, str] | None = None,
    cache_dir: Path | None = None,
    stats: EnvStats | None = None,
    log: list[str] | None = None,
) -> Env:
    """The environment ``key``, built when missing or built from something else.

    ``source`` is a checkout of the repository: its requirements files are read from it,
    and ``install`` (the repository's own install command) runs in it with the network, so
    the project's dependencies and build requirements are in the env. That install runs
    Later checkouts of the same env get missing dependencies from :func:`top_up`. The caller
    holds :func:`env_lock` of the env's root.
    """
    env = Env(key, envs_dir(cache_dir) / key)
    requirements = "\n".join(_read(source / p) for p in requirements_paths if (source / p).is_file())
    stamp = fingerprint(python, packages, requirements, [])
    meta_file = env.root / "env.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    built = not (meta.get("fingerprint") == stamp and (env.bin / "python").exists())
    if built:
        interpreter = find_python(python)
        shutil.rmtree(env.venv, ignore_errors=True)
        meta_file.unlink(missing_ok=True)
        meta = {}
        _step([str(interpreter), "-m", "venv", str(env.venv)], "create the venv", log)
        pip = [str(env.bin / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if packages:
            _step(pip + list(packages), "install the packages", log)
        if requirements.strip():
            req_file = env.root / "requirements.txt"
            req_file.write_text(_clean_requirements(requirements))
            _step(pip + ["-r", str(req_file)], "install the requirements", log)
        meta = {"fingerprint": stamp, "python": python, "packages": packages, "top_ups": 0}
    deps = _packaging_hash(source, install)
    if built or not meta.get("deps"):
        build_requires = _build_requires(source)
        if install:
            venv_env = {**os.environ, **(extra_env or {}), "PATH": f"{env.bin}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(env.venv)}
            _step(["bash", "-c", install], "run the repository's install", log, cwd=source, env=venv_env)
        if _PIP_INSTALL_SELF.match(install.strip()):  # offline_install will build in isolation
            download_build_requires(env, source, log)
        meta.update(deps=deps, build_requires=build_requires, top_ups=meta.get("top_ups", -1) + 1)
        meta_file.write_text(json.dumps(meta, indent=1))
    if stats is not None:
        stats.record(key, built=built)
    return env


def download_build_requires(env: Env, source: Path, log: list[str] | None = None) -> list[str]:
    """Put the checkout's build requirements into the env's wheel directory (the network)."""
    requires = _build_requires(source)
    download = [str(env.bin / "python"), "-m", "pip", "download", "--disable-pip-version-check", "-q", "--dest", str(env.wheels)]
    _step(download + requires + ["wheel"], "download the build requirements", log)
    return requires


def missing_requirements(env: Env, timeout: float = 120) -> list[str]:
    """The requirements ``pip check`` finds missing in the env (the project's own included)."""
    done = subprocess.run([str(env.bin / "python"), "-m", "pip", "check", "--disable-pip-version-check"], capture_output=True, text=True, timeout=timeout)
    missing = re.findall(r"^\S+ [\w.+!-]+ requires ([\w.-]+), which is not installed", done.stdout, re.MULTILINE)
    return sorted(set(missing))


def top_up(env: Env, requirements: list[str], log: list[str] | None = None) -> None:
    """Install requirements a later checkout needs (the network; no repository code runs)."""
    _step([str(env.bin / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements], "install the missing dependencies", log)
    meta_file = env.root / "env.json"
    meta = json.loads(meta_file.read_text())
    meta["top_ups"] = meta.get("top_ups", 0) + 1
    meta_file.write_text(json.dumps(meta, indent=1))


def _packaging_hash(source: Path, install: str) -> str:
    """What the project's dependencies and build depend on: its packaging files."""
    digest = hashlib.sha256(install.encode())
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "requirements.txt"):
        path = source / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-"))
    return digest.hexdigest()[:16]


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _clean_requirements(text: str) -> str:
    """Drop the lines an environment cannot use before the checkout exists (the official
    rule: ``-e .``, comments, ``.[test]``, recursive ``-r`` files)."""
    keep = [line for line in text.splitlines() if not re.match(r"\s*(-e\s+\.|#|\.\[|-r\s)", line)]
    return "\n".join(keep) + "\n"


def _build_requires(source: Path) -> list[str]:
    """What building the repository needs: pyproject's build requirements, or setuptools."""
    pyproject = source / "pyproject.toml"
    requires: list[str] = []
    if pyproject.is_file():
        try:
            requires = list(tomllib.loads(pyproject.read_text()).get("build-system", {}).get("requires", []))
        except tomllib.TOMLDecodeError:
            requires = []
    return requires or ["setuptools", "wheel"]


def _step(argv: list[str], what: str, log: list[str] | None, cwd: Path | None = None, env: dict | None = None) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=cwd, env=env)
    except subprocess.TimeoutExpired as exc:
        raise EnvError(f"environment build: {what} timed out") from exc
    if log is not None:
        log.append(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise EnvError(f"environment build: could not {what} (exit {done.returncode}): " + " | ".join(tail))


_PIP_INSTALL_SELF = re.compile(r"^(python -m pip|pip) install (-e )?\.(\[[\w,.-]+\])?$")


def offline_install(command: str, env: Env) -> str:
    """The repository's install command made to work offline in a built environment: the
    official ``pip install [-e] .[extras]`` becomes an editable install without dependencies
    (they are in the env already) whose isolated build takes its requirements from the
    env's wheel directory, never the index."""
    match = _PIP_INSTALL_SELF.match(command.strip())
    if match is None:
        return command
    extras = match.group(3) or ""
    return f"python -m pip install --disable-pip-version-check -q --no-index --find-links {env.wheels} --no-deps -e .{extras}"
