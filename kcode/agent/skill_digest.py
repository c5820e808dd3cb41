"""A session's log, digested for the model that writes a skill from it (``kcode skills
save``): the task and outcome, each step's tool call (the literal command, the file, the
result in a line or a few), then the commands run, the checks that passed and failed, and the
files changed and read. Only the session's own events: a sub-agent's, tagged with its own id
in the parent's log, are left out."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kcode.events import AssistantMessage, Event, FileChanged, SessionFinished, TestsRun, ToolCallFinished
from kcode.session import SessionMeta

__all__ = ["SessionDigest", "digest_session"]

_OUTPUT_LINES = 6
_OUTPUT_CHARS = 400
_ARGUMENT_CHARS = 300
_LISTED = 100


@dataclass
class SessionDigest:
    text: str
    commands: list[str] = field(default_factory=list)  # the literal commands, in order
    checks: list[str] = field(default_factory=list)  # test commands that passed
    files_changed: list[str] = field(default_factory=list)
    steps_left_out: int = 0


def _short(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def _excerpt(output: str) -> str:
    lines = output.strip().splitlines()
    shown = "\n".join(lines[:_OUTPUT_LINES])
    if len(lines) > _OUTPUT_LINES:
        shown += f"\n[... {len(lines) - _OUTPUT_LINES} more lines]"
    return _short(shown, _OUTPUT_CHARS)


def _call(event: ToolCallFinished, test_command: str | None) -> tuple[str, str | None]:
    """The call as a line, and the literal command it ran (if it ran one)."""
    args = event.arguments
    name = event.name
    if name == "bash":
        command = str(args.get("command", ""))
        return f"bash: $ {command}", command
    if name == "run_tests":
        command = test_command or str(args.get("command") or "(the detected test command)")
        return f"run_tests: $ {command}", command
    if name == "edit_file":
        return f"edit_file {args.get('path')}: replaced {_short(str(args.get('old', '')), 150)!r} with {_short(str(args.get('new', '')), 150)!r}", None
    if name == "write_file":
        content = str(args.get("content", ""))
        return f"write_file {args.get('path')} ({content.count(chr(10)) + 1} lines)", None
    if name in ("read_file", "list_files"):
        return f"{name} {args.get('path', '.')}", None
    if name == "finish":
        return f"finish: {_short(str(args.get('summary', '')), _ARGUMENT_CHARS)}", None
    return f"{name} {_short(json.dumps(args, ensure_ascii=False), _ARGUMENT_CHARS)}", None


def digest_session(meta: SessionMeta, events: Iterable[Event], *, max_chars: int = 40_000) -> SessionDigest:
    """The digest of ``meta``'s session from its ``events``, at most about ``max_chars``
    characters: when the steps do not fit, the middle ones are left out (and counted)."""
    steps: list[str] = []
    commands: list[str] = []
    passed: list[str] = []
    failed: list[str] = []
    changed: dict[str, str] = {}
    read: list[str] = []
    notes: dict[int, str] = {}
    finished: SessionFinished | None = None
    pending_tests: dict[int, TestsRun] = {}
    calls: list[ToolCallFinished] = []
    for event in events:
        if event.agent_id and event.agent_id != meta.session_id:
            continue  # a sub-agent's event
        if isinstance(event, ToolCallFinished):
            calls.append(event)
        elif isinstance(event, TestsRun):
            pending_tests[len(calls)] = event  # belongs to the call just finished
            counts = f"{event.passed} passed, {event.failed} failed, {event.errors} errors"
            (passed if event.ok else failed).append(f"`{event.command}`: {counts} (step {event.step})")
        elif isinstance(event, FileChanged):
            for change in event.changes:
                changed[change.get("path", "?")] = change.get("kind", "update")
        elif isinstance(event, AssistantMessage) and event.content.strip():
            notes.setdefault(event.step, _short(event.content, _ARGUMENT_CHARS))
        elif isinstance(event, SessionFinished):
            finished = event
    for index, call in enumerate(calls, 1):
        tests = pending_tests.get(index)
        line, command = _call(call, tests.command if tests else None)
        if command:
            commands.append(command)
        if call.name == "read_file" and call.arguments.get("path") not in read:
            read.append(str(call.arguments.get("path")))
        result = "error" if call.is_error else "ok"
        if call.name == "bash" and "exit_code" in call.data:
            result = f"exit {call.data['exit_code']}"
        if tests is not None:
            result = f"{'passed' if tests.ok else 'failed'}: {tests.passed} passed, {tests.failed} failed, {tests.errors} errors"
        entry = f"- step {call.step}: {line} -> {result}"
        note = notes.pop(call.step, None)
        if note:
            entry = f"- step {call.step}, the agent said: {note}\n" + entry
        if call.name in ("bash", "run_tests") or call.is_error:
            entry += "\n  " + _excerpt(call.output).replace("\n", "\n  ")
        steps.append(entry)

    status = finished.status if finished else meta.status
    summary = (finished.summary if finished else meta.summary) or "(none)"
    head = [
        f"# Session {meta.session_id}",
        f"Task: {meta.task.strip()}",
        f"Repository: {Path(meta.repo).name}",
        f"Outcome: {status} after {meta.steps} steps. Summary: {summary.strip()}",
    ]

    def section(title: str, items: list[str]) -> list[str]:
        shown = items[:_LISTED] + ([f"- ... {len(items) - _LISTED} more"] if len(items) > _LISTED else [])
        return ["", f"## {title}", *(shown or ["- (none)"])]

    tail = [
        *section("Commands run (literal, in order)", [f"- `{c}`" for c in commands]),
        *section("Checks that passed", [f"- {c}" for c in passed]),
        *section("Checks that failed on the way", [f"- {c}" for c in failed]),
        *section("Files changed", [f"- {path} ({kind})" for path, kind in sorted(changed.items())]),
        *section("Files read", [f"- {path}" for path in read]),
    ]
    fixed = len("\n".join(head + tail)) + 40
    kept, left_out = _fit(steps, max(2000, max_chars - fixed))
    text = "\n".join([*head, "", "## Steps", *kept, *tail])
    return SessionDigest(text, commands, [c for c in passed], sorted(changed), left_out)


def _fit(steps: list[str], budget: int) -> tuple[list[str], int]:
    """The first and last steps that fit in ``budget`` characters, with a line for the rest."""
    if sum(len(step) + 1 for step in steps) <= budget:
        return steps, 0
    head: list[str] = []
    tail: list[str] = []
    used = 60  # the line saying how many were left out
    low, high = 0, len(steps) - 1
    take_head = True
    while low <= high:
        step = steps[low] if take_head else steps[high]
        if used + len(step) + 1 > budget:
            break
        used += len(step) + 1
        if take_head:
            head.append(step)
            low += 1
        else:
            tail.insert(0, step)
            high -= 1
        take_head = not take_head
    left_out = high - low + 1
    return [*head, f"- [... {left_out} steps left out here to fit ...]", *tail], left_out
