"""The prompt's head: the fixed system prompt, the repository part, the task.

Layout, so that the KV state of the head can be cached and reused (kcode.llm.llamacpp: the prefix cache)::

    [system: prompts/system.md]         + the tool schemas (the chat template puts them here)
    [system: prompts/repository.md]     the repository's name, AGENTS.md, the skills catalog
                                        (prompts/skills/catalog.md), the pack: first its
                                        task-independent part, then the part for this task
    [user:   the task]

The first message is the same in every repository and every run, so its state is cached
once per model; the second starts the same for every run in a repository until its files
change (the pack puts the files that change least first). The skills catalog is in the second
message, not the first: which skills there are depends on the repository (its own, when it is
trusted) and on the user's folders. Only whether there are any changes the first: the
``skill`` tool's schema is among the tools then.
Both are built once per session and never rewritten while the conversation grows (a
summarizing compaction re-packs the repository part).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2

from kcode.resources import read_prompt

__all__ = [
    "AGENTS_MD_LIMIT",
    "FIXED_PROMPT_LIMIT",
    "read_agents_md",
    "system_prompt",
    "repository_prompt",
    "initial_messages",
    "fixed_messages",
    "conservative_token_estimate",
]

AGENTS_MD_LIMIT = 32 * 1024
FIXED_PROMPT_LIMIT = 1200  # tokens of system prompt + default tool schemas, default model's tokenizer


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


@lru_cache(maxsize=1)
def system_prompt() -> str:
    """The fixed instructions: identical in every repository and run."""
    return read_prompt("system.md").strip() + "\n"


def repository_prompt(*, repo_name: str, agents_md: str = "", skills: str = "", repo_pack: str = "", task_pack: str = "") -> str:
    """The repository part of the head: its name, AGENTS.md, the ``<available_skills>``
    catalog (kcode.skills.render_catalog), the pack's task-independent part (the same for
    every task), then the part packed for this task."""
    template = _ENV.from_string(read_prompt("repository.md"))
    return template.render(repo_name=repo_name, agents_md=agents_md, skills=skills, repo_pack=repo_pack,
                           task_pack=task_pack).strip() + "\n"


def fixed_messages() -> list[dict[str, str]]:
    """The head's fixed part (with the tool schemas, what every prompt starts with)."""
    return [{"role": "system", "content": system_prompt()}]


def initial_messages(repository: str, task: str) -> list[dict[str, str]]:
    """A new conversation: the fixed system prompt, the repository part, the task."""
    return [*fixed_messages(), {"role": "system", "content": repository}, {"role": "user", "content": task}]


# Pieces as a byte-level BPE pre-tokenizer cuts text: special markers, words with their
# leading space, single digits, runs of punctuation, runs of whitespace.
_PIECES = re.compile(r"<\|[a-z_]+\|>|'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+")


def conservative_token_estimate(text: str) -> int:
    """Tokens of ``text`` when no tokenizer is at hand, erring high: one per pre-tokenizer
    piece, one more per 8 letters of a long word. On English prose, Python and JSON tool
    schemas it overcounts Qwen2.5's tokenizer by 1–25 % (tests/agent/test_prompt.py checks
    the fixed prompt against the real tokenizer)."""
    count = 0
    for piece in _PIECES.findall(text):
        word = piece.strip()
        count += 1 + ((len(word) - 1) // 8 if word.isalpha() else 0)
    return count
