"""``kcode skills save``: a finished session, distilled into a skill.

The model reads a digest of the session's log (kcode.agent.skill_digest) and hands in a
SKILL.md through a ``write_skill`` tool call (a plain answer holding the file is taken too).
kcode checks it — the front matter's rules (kcode.skills.format), the name asked for, a
non-empty body of at most :data:`BODY_MAX_LINES` lines — and, when it fails, asks once more
with what was wrong; a second failure is a :class:`SkillError`. The skill goes to the
repository's ``.kcode/skills/<name>/`` (scope ``project``) or the user's
``config_dir()/skills/<name>/`` (scope ``user``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from kcode.agent.skill_digest import digest_session
from kcode.config import load_config
from kcode.errors import SkillError, UsageError
from kcode.llm.base import ChatModel, Message, StepEnd, ToolSpec
from kcode.llm.registry import ModelOptions, create_model
from kcode.paths import config_dir
from kcode.resources import read_prompt
from kcode.sandbox import load_policy
from kcode.session import SessionMeta, SessionStore, read_events
from kcode.skills import DESCRIPTION_MAX, NAME_MAX, SKILL_FILE, front_matter_problems, split_front_matter
from kcode.skills.format import SKILL_MD_MAX_BYTES
from kcode.trust import check_project_settings, is_trusted

__all__ = ["BODY_MAX_LINES", "SCOPES", "SavedSkill", "skill_md_problems", "distill_skill", "skill_folder", "save_session_skill"]

BODY_MAX_LINES = 500  # agentskills.io's advice for a SKILL.md
SCOPES = ("project", "user")

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)
_FENCE = re.compile(r"\A\s*```[\w-]*[ \t]*\n(.*?)\n```\s*\Z", re.DOTALL)
_WRITE_SKILL = ToolSpec(
    "write_skill", read_prompt("skills/write_skill.md").strip(),
    {"type": "object", "properties": {"skill_md": {"type": "string"}}, "required": ["skill_md"], "additionalProperties": False},
)  # fmt: skip


@dataclass
class SavedSkill:
    name: str
    path: Path  # the SKILL.md written
    scope: str
    attempts: int  # model answers it took (1 or 2)
    loaded: bool  # whether discovery will find it (a project skill needs a trusted repository)


def _render(prompt: str, **values: object) -> str:
    return _ENV.from_string(read_prompt(f"skills/{prompt}")).render(**values).strip()


def skill_md_problems(text: str, name: str | None = None) -> list[str]:
    """What keeps ``text`` from being saved as a SKILL.md (nothing: ``[]``); ``name``: the
    name it must have."""
    if not text.strip():
        return ["the answer holds no SKILL.md"]
    if len(text.encode("utf-8")) > SKILL_MD_MAX_BYTES:
        return [f"it is {len(text.encode('utf-8'))} bytes; at most {SKILL_MD_MAX_BYTES} are allowed"]
    try:
        data, body = split_front_matter(text, SKILL_FILE)
    except SkillError as error:
        return [str(error)]
    problems = front_matter_problems(data, name)
    if not body.strip():
        problems.append("the body (the instructions after the front matter) is empty")
    elif len(body.strip().splitlines()) > BODY_MAX_LINES:
        problems.append(f"the body has {len(body.strip().splitlines())} lines; at most {BODY_MAX_LINES} are allowed")
    return problems


def _answer(model: ChatModel, messages: list[Message]) -> StepEnd:
    end = None
    for chunk in model.stream(messages, [_WRITE_SKILL]):
        if isinstance(chunk, StepEnd):
            end = chunk
    if end is None:
        raise SkillError("the model's answer ended without a message")
    return end


def _skill_text(end: StepEnd) -> tuple[str, str | None]:
    """The SKILL.md the answer holds, and what was wrong with the call that held it."""
    for call in end.tool_calls:
        if call.name == "write_skill":
            if call.error:
                return "", f"the write_skill call's {call.error}"
            text = call.arguments.get("skill_md")
            return (text, None) if isinstance(text, str) else ("", "the write_skill call has no skill_md string")
    text = end.content or ""
    fenced = _FENCE.match(text)
    return (fenced.group(1) if fenced else text).strip() + "\n", None


def distill_skill(meta: SessionMeta, events: list, model: ChatModel, *, name: str | None = None) -> tuple[str, int]:
    """The SKILL.md the model writes for the session, checked, and the answers it took.
    Raises :class:`SkillError` when the retry is invalid too."""
    limits = dict(name=name, name_max=NAME_MAX, description_max=DESCRIPTION_MAX, body_max_lines=BODY_MAX_LINES)
    digest = digest_session(meta, events, max_chars=max(4000, min(60_000, model.context_window * 3 // 2)))
    messages: list[Message] = [
        {"role": "system", "content": _render("save.md", **limits)},
        {"role": "user", "content": _render("save_request.md", digest=digest.text, name=name)},
    ]
    problems: list[str] = []
    for attempt in (1, 2):
        end = _answer(model, messages)
        text, call_problem = _skill_text(end)
        problems = [call_problem] if call_problem else skill_md_problems(text, name)
        if not problems:
            return text, attempt
        feedback = _render("invalid.md", problems="; ".join(problems))
        calls = [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in end.tool_calls]
        messages.append({"role": "assistant", "content": end.content, "tool_calls": calls})
        if calls:
            messages.extend({"role": "tool", "tool_call_id": call["id"], "name": call["name"], "content": feedback} for call in calls)
        else:
            messages.append({"role": "user", "content": feedback})
    raise SkillError(f"the model's SKILL.md for session {meta.session_id} is invalid after a retry: {'; '.join(problems)}")


def _session_model(meta: SessionMeta, spec: str | None) -> ChatModel:
    """The session's model (its settings as it ran), or ``spec``; the repository's own
    settings are checked as for a run."""
    root = Path(meta.repo)
    config = load_config(root, {**meta.options, **({"model": spec} if spec else {})})
    check_project_settings(config, root, load_policy)
    options = ModelOptions(base_url=config.base_url, session_id=meta.session_id, context_window=config.context_window,
                           temperature=config.temperature, seed=config.seed, max_output_tokens=config.max_output_tokens,
                           llamacpp=config.llamacpp)  # fmt: skip
    return create_model(config.model, options)


def skill_folder(scope: str, root: Path, name: str) -> Path:
    if scope == "project":
        return root / ".kcode" / "skills" / name
    if scope == "user":
        return config_dir() / "skills" / name
    raise UsageError(f"unknown scope {scope!r} (use one of: {', '.join(SCOPES)})")


def save_session_skill(session_id: str | None, *, repo: Path | None = None, name: str | None = None, scope: str = "project",
                       model: ChatModel | None = None, model_spec: str | None = None, force: bool = False,
                       store: SessionStore | None = None) -> SavedSkill:  # fmt: skip
    """Distill session ``session_id`` (default: the latest of ``repo``) into a skill and write
    it. ``model``: the one to write it (kept open; default: ``model_spec``, else the
    session's). A session that did not finish, or a skill that exists (unless ``force``), is
    refused before the model is asked."""
    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r} (use one of: {', '.join(SCOPES)})")
    if name is not None and front_matter_problems({"name": name, "description": "-"}):
        raise UsageError(f"--name {name!r}: " + "; ".join(front_matter_problems({"name": name, "description": "-"})))
    store = SessionStore() if store is None else store
    meta = store.resolve(session_id, repo)
    if meta.status != "finished":
        raise UsageError(f"session {meta.session_id} ended {meta.status!r}; only a finished session can be saved as a skill")
    root = Path(meta.repo)
    if scope == "project" and not root.is_dir():
        raise UsageError(f"session {meta.session_id}'s repository {root} is gone; save the skill with --scope user")
    if name is not None:
        _refuse_existing(skill_folder(scope, root, name), force)
    events = list(read_events(store.log_path(meta.session_id)))
    owns_model = model is None
    model = _session_model(meta, model_spec) if model is None else model
    try:
        text, attempts = distill_skill(meta, events, model, name=name)
    finally:
        if owns_model:
            model.close()
    data, _ = split_front_matter(text)
    folder = skill_folder(scope, root, data["name"])
    _refuse_existing(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SKILL_FILE
    temporary = path.with_name(SKILL_FILE + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return SavedSkill(data["name"], path, scope, attempts, loaded=scope == "user" or is_trusted(root))


def _refuse_existing(folder: Path, force: bool) -> None:
    if (folder / SKILL_FILE).exists() and not force:
        raise UsageError(f"{folder / SKILL_FILE} exists; choose another --name, or --force to replace it")
