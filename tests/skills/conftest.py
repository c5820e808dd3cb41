"""Skill folders written for a test."""

from __future__ import annotations

from pathlib import Path


def write_skill(base: Path, name: str, description: str = "Does a thing; use it for that thing.", body: str = "# Steps\n\n1. Do it.\n",
                *, front: str | None = None, folder: str | None = None) -> Path:  # fmt: skip
    """``base/<folder or name>/SKILL.md``; ``front``: the front matter's YAML as written (default:
    name and description)."""
    directory = base / (folder or name)
    directory.mkdir(parents=True, exist_ok=True)
    yaml = front if front is not None else f"name: {name}\ndescription: {description}\n"
    (directory / "SKILL.md").write_text(f"---\n{yaml}---\n{body}", encoding="utf-8")
    return directory
