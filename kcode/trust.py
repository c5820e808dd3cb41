"""Which repositories may loosen kcode's safety settings from their own files.

A repository's ``.kcode/`` folder travels with a clone, so its settings are the repository
author's, not the user's. Until the user trusts the repository, they may only *tighten*:

- ``.kcode/config.toml`` may not choose a sandbox profile that turns the sandbox off or
  opens the network, and may not set ``base_url`` or a model URL (the prompts, the user's
  uncommitted files and the API key would go to a server of the author's choosing) or
  ``prefix_cache`` (a file kcode writes, anywhere on disk);
- ``.kcode/sandbox/*.toml`` profiles may hide more paths, lower limits, choose a stricter
  mode and set or pass through (non-credential) variables, but not open the network,
  relax the mode, add writable or readable host paths, or raise a limit.

``kcode trust [PATH]`` records the repository (its resolved path) in
``config_dir()/trusted-projects``, one path per line; ``KCODE_TRUST_PROJECT=1`` trusts
whatever repository kcode runs in (for CI, where the checkout is the user's own).

The sandbox profiles check themselves as they load (:func:`kcode.sandbox.load_policy` asks
:func:`is_trusted`); :func:`check_project_settings` checks ``config.toml``, and whoever
starts a run calls it (the runner, ``kcode sandbox exec``, ``kcode pack``). This module is
part of the foundation, below the sandbox, so the check is handed the way to load a profile.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from kcode.config import Config, settings
from kcode.errors import ConfigError
from kcode.paths import config_dir

__all__ = [
    "is_trusted",
    "trust",
    "untrust",
    "trusted_projects",
    "trust_file",
    "check_project_settings",
    "TRUST_HINT",
]

TRUST_HINT = "trust this repository with `kcode trust` (or KCODE_TRUST_PROJECT=1) if you wrote these settings"


def trust_file() -> Path:
    return config_dir() / "trusted-projects"


def trusted_projects() -> list[Path]:
    try:
        lines = trust_file().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_trusted(root: Path | str | None) -> bool:
    if os.environ.get("KCODE_TRUST_PROJECT", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if root is None:
        return False
    resolved = Path(root).resolve()
    return resolved in trusted_projects()


def _write(paths: list[Path]) -> None:
    path = trust_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Repositories whose .kcode/ settings may loosen the sandbox (kcode trust).\n"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text + "".join(f"{p}\n" for p in paths), encoding="utf-8")
    os.replace(temporary, path)


def trust(root: Path | str) -> bool:
    """Trust ``root``; False if it already was."""
    resolved = Path(root).resolve()
    known = trusted_projects()
    if resolved in known:
        return False
    _write([*known, resolved])
    return True


def untrust(root: Path | str) -> bool:
    """Stop trusting ``root``; False if it was not trusted."""
    resolved = Path(root).resolve()
    known = trusted_projects()
    if resolved not in known:
        return False
    _write([p for p in known if p != resolved])
    return True


class SandboxProfile(Protocol):
    """What the check reads of a loaded sandbox profile (a kcode.sandbox.SandboxPolicy)."""

    mode: str
    network: bool


class ProfileLoader(Protocol):
    """``kcode.sandbox.load_policy``'s signature, as far as the check calls it."""

    def __call__(self, name: str, root: Path | None = None, *, trusted: bool | None = None) -> SandboxProfile: ...


def check_project_settings(config: Config, root: Path, load_profile: ProfileLoader) -> None:
    """Refuse the settings ``config`` took from the repository's own ``.kcode/config.toml``
    (``config.project_settings``) that loosen kcode's safety, unless the repository at
    ``root`` is trusted: a sandbox profile that runs commands unsandboxed or opens the
    network, ``base_url`` or a model URL (the prompts and the API key would go elsewhere),
    ``prefix_cache`` (a file kcode writes, anywhere). Raises :class:`ConfigError`.

    ``load_profile`` is :func:`kcode.sandbox.load_policy` (passed in: the sandbox sits above
    this module); it loads the profile as the untrusted repository sees it, and only when
    the repository chose the profile."""
    chosen = config.project_settings
    if not chosen or is_trusted(root):
        return
    source = root / ".kcode" / "config.toml"

    def refuse(what: str) -> None:
        raise ConfigError(f"{source} comes with the repository and {what}; {TRUST_HINT}")

    values = settings(config)
    for key in ("base_url", "prefix_cache", "sandbox_readable"):
        if key in chosen and values[key]:
            refuse(f"sets {key} (only your own settings may)")
    if "model" in chosen and config.model and "://" in config.model:
        refuse("names a model URL (only your own settings may)")
    if "sandbox" in chosen:
        profile = load_profile(config.sandbox, root, trusted=False)
        if profile.mode == "off":
            refuse(f"chooses sandbox profile {config.sandbox!r}, which runs commands unsandboxed")
        if profile.network:
            refuse(f"chooses sandbox profile {config.sandbox!r}, which opens the network")
