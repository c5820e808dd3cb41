"""The text renderer: progress on stderr while the run goes on, the final summary on stdout."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from kcode.events import (
    ApprovalRequested,
    ApprovalResolved,
    AssistantMessage,
    BudgetWarning,
    Checkpoint,
    Compaction,
    ContextPacked,
    RepairTried,
    EnvironmentResolved,
    InterruptEvent,
    Rewound,
    ErrorEvent,
    Event,
    SessionFinished,
    SessionStarted,
    SteeringDelivered,
    SteeringQueued,
    TodoUpdated,
    ToolCallFinished,
    ToolCallStarted,
    TurnStarted,
)
from kcode.sandbox.project import environment_line, shown_line
from kcode.tools.plan import render_todo

__all__ = ["TextRenderer", "summarize_arguments", "prefill_line"]

_ARG_CHARS = 80


def summarize_arguments(name: str, arguments: dict) -> str:
    if name in ("bash", "run_tests") and arguments.get("command"):
        return str(arguments["command"]).splitlines()[0][:_ARG_CHARS * 2]
    parts = []
    for key, value in arguments.items():
        text = str(value).replace("\n", "⏎")
        if len(text) > _ARG_CHARS:
            text = text[: _ARG_CHARS - 1] + "…"
        parts.append(f"{key}={text}")
    return " ".join(parts)


def prefill_line(event: ContextPacked) -> str:
    """How the pack budget was chosen and what the first prefill is expected to cost."""
    line = f"budget {event.budget} tokens ({event.budget_why})"
    fixed = f"fixed prompt {event.fixed_prompt_tokens} tokens{' cached' if event.fixed_prompt_cached else ''}"
    if event.expected_prefill_seconds is not None:
        line += f"; first prefill ≈ {event.expected_prefill_seconds:g} s ({fixed}"
        line += f", {event.restored_tokens} pack tokens cached)" if event.restored_tokens else ")"
    elif event.fixed_prompt_tokens:
        line += f"; {fixed}"
    return line


class TextRenderer:
    def __init__(self, err: TextIO | None = None, *, color: bool | None = None, verbose: bool = False) -> None:
        self._err = err or sys.stderr
        if color is None:
            color = self._err.isatty() and "NO_COLOR" not in os.environ
        self._color = color
        self._verbose = verbose

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self._color else text

    def _line(self, text: str = "") -> None:
        self._err.write(text + "\n")
        self._err.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            verb = "resumed" if event.resumed else "started"
            self._line(self._style(f"kcode session {event.session_id} {verb} · model {event.model}", "1"))
            where = f"work tree {event.workdir}" if event.mode == "worktree" else "in place"
            self._line(self._style(f"  branch {event.branch} · {where}", "2"))
            served = [f"model {event.serving}"] if event.serving else []
            if event.subagents and (event.serving or not event.subagents.startswith("off")):
                served.append(f"sub-agents: {event.subagents}")
            if served:
                self._line(self._style("  " + " · ".join(served), "2"))
        elif isinstance(event, EnvironmentResolved):
            described = environment_line(event.python, event.python_version, event.environment, event.environment_source)
            self._line(self._style(f"  commands see the files at {event.path} · {described}", "2"))
            if event.shown:
                self._line(self._style("  " + shown_line(event.shown, event.left_out), "2"))
            if event.note:
                self._line(self._style(f"  ! {event.note}", "33"))
        elif isinstance(event, RepairTried):
            self._line(self._style(f"  repair: {event.name} ({event.path}{f' line {event.line}' if event.line else ''}) #{event.sample}: {event.outcome}" + (f" — {event.detail}" if event.detail else ""), "2"))
        elif isinstance(event, ContextPacked):
            where = f"{event.files_whole} files whole" + (f", {event.files_map} in the map" if event.files_map else "")
            self._line(self._style(f"  repository packed ({event.mode}): {event.tokens} of {event.budget} tokens, {where}", "2"))
            if event.budget_why:
                self._line(self._style("  " + prefill_line(event), "2"))
            if event.prefill_settings:
                self._line(self._style(f"  llama.cpp: {event.prefill_settings}", "2"))
        elif isinstance(event, TurnStarted):
            self._line(self._style(f"── step {event.step}", "2"))
        elif isinstance(event, AssistantMessage):
            if event.reasoning and self._verbose:
                self._line(self._style("  thinking: " + event.reasoning.strip().replace("\n", "\n  "), "2;3"))
            if event.content.strip():
                self._line("  " + event.content.strip().replace("\n", "\n  "))
        elif isinstance(event, ToolCallStarted):
            self._line(f"  → {event.name} {summarize_arguments(event.name, event.arguments)}")
        elif isinstance(event, ToolCallFinished):
            mark = self._style("✗", "31") if event.is_error else self._style("✓", "32")
            lines = event.output.strip().splitlines() or [""]
            first = lines[0][:160]
            more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
            self._line(f"    {mark} {first}{self._style(more, '2')} {self._style(f'{event.duration_ms:.0f} ms', '2')}")
        elif isinstance(event, Checkpoint):
            self._line(self._style(f"    checkpoint {event.commit[:10]}", "2"))
        elif isinstance(event, TodoUpdated):
            self._line("    plan:\n      " + render_todo(event.items).replace("\n", "\n      "))
        elif isinstance(event, Compaction):
            self._line(self._style(f"  compacted the conversation ({event.strategy}): {event.tokens_before} → {event.tokens_after} tokens", "35"))
        elif isinstance(event, Rewound):
            self._line(self._style(f"── rewound from step {event.from_step} to step {event.to_step} (files at {event.commit[:10]})", "35"))
        elif isinstance(event, BudgetWarning):
            self._line(self._style(f"  ! {event.budget} budget {event.fraction:.0%} used ({event.used:.0f}/{event.limit:.0f})", "33"))
        elif isinstance(event, ErrorEvent):
            self._line(self._style(f"  ! {event.kind}: {event.message}", "33" if event.recoverable else "31"))
        elif isinstance(event, SteeringQueued | SteeringDelivered):
            verb = "queued for the next step" if isinstance(event, SteeringQueued) else "delivered"
            self._line(self._style(f"  » message {verb}: " + event.text.strip().splitlines()[0][:160], "36"))
        elif isinstance(event, InterruptEvent):
            self._line(self._style("  ! interrupted: " + ("the step (the run goes on)" if event.scope == "step" else "the run"), "33"))
        elif isinstance(event, ApprovalRequested):
            self._line(self._style(f"  ? approval needed ({event.needs}): {event.reason}; waiting for an answer from kcode attach {event.agent_id}", "33"))
        elif isinstance(event, ApprovalResolved):
            self._line(self._style(f"  ? approval {event.request_id}: {event.decision}" + (f" ({event.reason})" if event.reason else ""), "33"))
        elif isinstance(event, SessionFinished):
            self._line(self._style(f"── {event.status} after {event.steps} steps, {event.duration_ms / 1000:.1f}s", "1"))
