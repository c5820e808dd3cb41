"""The ``<available_skills>`` catalog the model reads (``prompts/skills/catalog.md``): each
skill's name, description and ``SKILL.md``, within a share of the model's window."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

import jinja2

from kcode.resources import read_prompt
from kcode.skills.format import Skill

__all__ = ["CATALOG_SHARE", "catalog_budget", "skill_location", "render_catalog"]

CATALOG_SHARE = 0.02  # of the model's window

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)


def catalog_budget(context_window: int, share: float = CATALOG_SHARE) -> int:
    return int(context_window * share)


def skill_location(skill: Skill, root: Path | None = None) -> str:
    """Where the ``SKILL.md`` is, as a person writes it: relative to the repository for the
    project's, ``~/...`` under the home folder, else absolute."""
    path = skill.skill_md
    for base, prefix in ((root, ""), (Path.home(), "~/")):
        if base is None:
            continue
        try:
            return prefix + path.relative_to(base).as_posix()
        except ValueError:
            continue
    return str(path)


def _render(entries: Sequence[dict[str, str]], left_out: int) -> str:
    return _ENV.from_string(read_prompt("skills/catalog.md")).render(skills=entries, left_out=left_out).strip()


def render_catalog(skills: Sequence[Skill], count_tokens: Callable[[str], int], context_window: int, *,
                   root: Path | None = None, share: float = CATALOG_SHARE) -> str:  # fmt: skip
    """The catalog of ``skills`` in their order, at most ``share`` of ``context_window``
    tokens (``count_tokens``: the model's tokenizer): the skills that do not fit are left out
    from the end, with a line saying how many. ``""`` when there are none, or not even that
    line fits."""
    if not skills:
        return ""
    budget = catalog_budget(context_window, share)
    entries = [
        {"name": skill.name, "description": escape(" ".join(skill.description.split()), quote=False),
         "location": escape(skill_location(skill, root), quote=False)}
        for skill in skills
    ]  # fmt: skip

    def fits(count: int) -> str | None:
        text = _render(entries[:count], len(entries) - count)
        return text if count_tokens(text) <= budget else None

    whole = fits(len(entries))
    if whole is not None:
        return whole
    low, high = 0, len(entries) - 1  # the most entries that fit lie in [low, high], if any do
    if fits(0) is None:
        return ""
    while low < high:  # more entries never take fewer tokens
        middle = (low + high + 1) // 2
        if fits(middle) is None:
            high = middle - 1
        else:
            low = middle
    return fits(low) or ""
