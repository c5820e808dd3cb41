"""The system prompt (``prompts/system.md``) and the project instructions (AGENTS.md).

The system message and the repository pack form the stable prefix of every request: they
are built once per session and never rewritten while the conversation grows.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from kcode.resources import read_prompt

__all__ = ["AGENTS_MD_LIMIT", "read_agents_md", "build_system_prompt", "initial_messages"]

AGENTS_MD_LIMIT = 32 * 1024


def read_agents_md(root: Path, cwd: Path | None = None, limit: int = AGENTS_MD_LIMIT) -> str:
    """AGENTS.md files from ``root`` down to ``cwd``, concatenated root→leaf, capped at ``limit`` bytes."""
    root = root.resolve()
    directories = [root]
    if cwd is not None:
        try:
            relative = cwd.resolve().relative_to(root)
        except ValueError:
            relative = Path()
        for part in relative.parts:
            directories.append(directories[-1] / part)
    parts = []
    for directory in directories:
        path = directory / "AGENTS.md"
        if path.is_file():
            shown = path.relative_to(root).as_posix()
            parts.append(f"<!-- {shown} -->\n" + path.read_text(encoding="utf-8", errors="replace").strip())
    text = "\n\n".join(parts)
    data = text.encode("utf-8")
    if len(data) > limit:
        text = data[:limit].decode("utf-8", errors="ignore") + f"\n[AGENTS.md truncated at {limit} bytes]"
    return text


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, trim_blocks=True)


def build_system_prompt(*, repo_name: str, agents_md: str = "", repo_pack: str = "") -> str:
    template = _ENV.from_string(read_prompt("system.md"))
    return template.render(repo_name=repo_name, agents_md=agents_md, repo_pack=repo_pack).strip() + "\n"


def initial_messages(system_prompt: str, task: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": task}]
