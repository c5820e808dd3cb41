"""The user directories (platformdirs): data (sessions, work trees), cache (models, the
repository index, prefix KV states) and config (``config.toml``, sandbox profiles, the
trusted repositories). ``KCODE_HOME`` puts all three under one folder (tests and portable
installs). :func:`agents_dir` is the folder other agents share (``~/.agents``: skills); under
``KCODE_HOME`` it is ``KCODE_HOME/agents``.

Part of the foundation: it imports nothing from kcode, so every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["data_dir", "cache_dir", "config_dir", "agents_dir"]


def _home_override() -> Path | None:
    home = os.environ.get("KCODE_HOME")
    return Path(home).expanduser() if home else None


def data_dir() -> Path:
    home = _home_override()
    return home / "data" if home else Path(platformdirs.user_data_dir("kcode"))


def cache_dir() -> Path:
    home = _home_override()
    return home / "cache" if home else Path(platformdirs.user_cache_dir("kcode"))


def config_dir() -> Path:
    home = _home_override()
    return home / "config" if home else Path(platformdirs.user_config_dir("kcode"))


def agents_dir() -> Path:
    """``~/.agents``: what coding agents share across tools (``skills/``, agentskills.io)."""
    home = _home_override()
    return home / "agents" if home else Path.home() / ".agents"
