"""Locate the data folders shipped with kcode (``prompts/``, ``sandbox/``, ``evals/``).

In a wheel they are installed under ``kcode/_bundled/``; in a source checkout (editable
install) they sit at the repository root next to the ``kcode`` package.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ["resource_dir", "read_prompt"]

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def resource_dir(folder: str) -> Path:
    """Return the directory of a bundled data folder: ``prompts``, ``sandbox`` or ``evals``."""
    for candidate in (_PACKAGE_DIR / "_bundled" / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kcode data folder {folder!r} is missing from the installation")


@lru_cache(maxsize=None)
def read_prompt(relative_path: str) -> str:
    """Read a file below ``prompts/`` (e.g. ``system.md`` or ``tools/read_file.md``)."""
    return (resource_dir("prompts") / relative_path).read_text(encoding="utf-8")
