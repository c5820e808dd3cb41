"""The environment an agent works in during an eval: what the official harness gives it in the
instance's container, here without Docker.

The instance's grading environment (:mod:`kcode.evals.envs`: one venv per repository and
version, with the dependencies) is built or reused, and the agent's checkout gets a light
``.venv/`` on top of it: the same interpreter, a ``.pth`` file that puts the checkout's own
source first on ``sys.path`` (``src/`` when the project uses that layout), then the grading
environment's packages, and its console scripts (``pytest``) run by that interpreter. So ``python -m pytest`` in the checkout tests the agent's edits with
the project's dependencies, and kcode (and any agent that puts ``.venv/bin`` first on its
PATH) finds it as the repository's virtualenv. ``.venv/`` is kept out of git status.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kcode.errors import KcodeError
from kcode.evals.dataset import Instance

__all__ = ["AgentEnvError", "prepare_agent_env"]


class AgentEnvError(KcodeError):
    """The agent's environment could not be made (the run goes on without one)."""


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AgentEnvError(f"cannot ask {python} for its site-packages: {out.stderr.strip()[-200:]}")
    return Path(out.stdout.strip())


def _source_root(checkout: Path) -> Path:
    src = checkout / "src"
    if src.is_dir() and any(p.is_dir() and (p / "__init__.py").exists() for p in src.iterdir()):
        return src
    return checkout


def _console_scripts(env_bin: Path, venv_bin: Path) -> list[str]:
    """The grading environment's console scripts (``pytest``, ``tox``, ...) in the agent's
    ``.venv/bin``, run by its interpreter: a bare ``pytest`` then tests the checkout's source
    with the project's dependencies, not whatever ``pytest`` comes next on ``PATH`` (another
    Python's, importing another copy of the library). Returns the names made."""
    made = []
    for script in sorted(env_bin.iterdir()):
        name = script.name
        if name.startswith(("python", "pip", "activate", "Activate")) or (venv_bin / name).exists() or not script.is_file():
            continue
        try:
            first = script.open("rb").readline()
        except OSError:
            continue
        if not first.startswith(b"#!") or b"python" not in first:
            continue
        wrapper = venv_bin / name
        wrapper.write_text(f'#!/bin/sh\nexec "{venv_bin / "python"}" "{script}" "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)
        made.append(name)
    return made


def prepare_agent_env(inst: Instance, checkout: Path, *, repos_dir: Path | None = None, cache_dir: Path | None = None) -> tuple[Path, Path]:
    """Make ``checkout/.venv`` over the instance's grading environment; return (its path, the
    grading environment's folder, which the agent's sandbox must show read-only).
    Raises :class:`AgentEnvError` (or the grading side's errors) when there is none to have."""
    from kcode.evals import envs, swebench_compat
    from kcode.evals.grade import _checkout

    spec = swebench_compat.repo_spec(inst)
    root = envs.envs_dir(cache_dir) / spec.env_key
    with envs.env_lock(root):
        env_python = envs.Env(spec.env_key, root).bin / "python"
        if not env_python.exists():
            testbed = root / "testbed"
            _checkout(inst, testbed, repos_dir)
            envs.ensure_env(spec.env_key, spec.python, spec.packages, source=testbed, requirements_paths=spec.requirements_paths,
                            install=spec.install, extra_env=spec.env, cache_dir=cache_dir)
    env_site = _site_packages(env_python)
    venv = checkout / ".venv"
    made = subprocess.run([str(envs.find_python(spec.python)), "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True, timeout=120)
    if made.returncode != 0:
        raise AgentEnvError(f"python -m venv failed: {made.stderr.strip()[-200:]}")
    site = _site_packages(venv / "bin" / "python")
    # the checkout's source before everything else (the grading env's editable install points
    # at its own testbed: its finder comes after the path entries), then the env's packages
    # with their own .pth files processed (site.addsitedir)
    (site / "_kcode_eval_env.pth").write_text(f"{_source_root(checkout)}\nimport site; site.addsitedir({str(env_site)!r})\n", encoding="utf-8")
    _console_scripts(env_python.parent, venv / "bin")
    exclude = checkout / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a", encoding="utf-8") as fh:
        fh.write("\n/.venv/\n")
    return venv, root
