"""What the TUI shows, as plain data: events folded into turns of blocks, and the status line.

No Textual here: :class:`Transcript` is a reducer over the event stream (the same one the
session log holds), so a live run, a resumed one and an attached one render alike, and the
folding of long sessions (:mod:`kcode.tui.conversation`) works on data, not widgets. Events
are read by their ``type`` and attributes, so events this module does not know (or newer
fields) pass through harmlessly.

A block changes in place; ``version`` counts its changes, so a widget redraws only when its
block moved on. ``Transcript.changed`` collects the blocks changed since the last
:meth:`Transcript.take_changes`: the view applies them in one batch (every ~100 ms), which is
what merges a stream of text deltas into one Markdown update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Block", "Turn", "Status", "Transcript", "SUBAGENT_LINES"]

SUBAGENT_LINES = 40  # lines a sub-agent group keeps (its latest)


@dataclass(eq=False)
class Block:
    """One thing in the conversation: a user message, the assistant's text, a tool call, ..."""

    kind: str  # user assistant tool checkpoint tests todo compaction error notice agent approval finished
    key: str = ""
    title: str = ""
    text: str = ""
    reasoning: str = ""
    status: str = ""  # tool: running ok error; agent: running finished ...; approval: pending once always deny
    output: str = ""
    duration_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # agent groups: their latest lines
    turn: int = 0  # the index of the turn that holds it
    version: int = 0

    def touch(self) -> None:
        self.version += 1


@dataclass(eq=False)
class Turn:
    """The blocks of one step of the top-level agent (index 0: before the first step)."""

    index: int
    step: int
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Status:
    model: str = ""
    session_id: str = ""
    repo: str = ""
    branch: str = ""
    base_commit: str = ""
    mode: str = ""
    sandbox: str = ""
    context_window: int = 0
    context_used: int = 0
    tokens_reused: int = 0  # input tokens served from the KV cache, all steps
    tokens_evaluated: int = 0  # input tokens computed, all steps
    output_tokens: int = 0
    prefill_tps: float | None = None
    gen_tps: float | None = None
    step: int = 0
    max_steps: int = 0
    started: float = 0.0
    max_time: float = 0.0
    ended: float = 0.0
    state: str = "starting"  # starting running waiting finished
    queued: int = 0  # steering messages not delivered yet
    outcome: str = ""
    last_ts: float = 0.0  # the latest event's time
    live: bool = True  # a process runs the session now (else its clock stopped at last_ts)

    def elapsed(self, now: float | None = None) -> float:
        if not self.started:
            return 0.0
        if self.ended:
            return self.ended - self.started
        if not self.live:
            return max(0.0, self.last_ts - self.started)
        return (now if now is not None else time.time()) - self.started


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_title(name: str, arguments: dict[str, Any]) -> str:
    """``bash: pytest -q`` / ``read_file: calc/__init__.py``: the call in one line."""
    if not isinstance(arguments, dict) or not arguments:
        return name
    for key in ("command", "path", "pattern", "query", "summary", "task"):
        if key in arguments:
            return f"{name}: {_short(arguments[key])}"
    return f"{name}: {_short(', '.join(f'{k}={v}' for k, v in arguments.items()))}"


class Transcript:
    """The event stream folded into turns of blocks, plus the status line's figures."""

    def __init__(self) -> None:
        self.turns: list[Turn] = [Turn(0, 0)]
        self.status = Status()
        self.root_id: str | None = None
        self.todo: list[dict[str, str]] = []
        self.checkpoints: list[tuple[int, str]] = []  # (step, commit)
        self.pending_approvals: dict[str, Block] = {}
        self.events = 0
        self.changed: dict[int, Block] = {}  # id(block) -> block, changed since take_changes
        self.new_turns = 0  # turns added since take_changes
        self._tools: dict[str, Block] = {}
        self._assistant: Block | None = None
        self._agents: dict[str, Block] = {}
        self._queued: list[Block] = []
        self._pending_files: list[dict[str, str]] = []  # changed since the last checkpoint
        self._turn_started = 0.0
        self._first_token = 0.0

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def current(self) -> Turn:
        return self.turns[-1]

    def add(self, block: Block, turn: Turn | None = None) -> Block:
        turn = turn or self.current
        block.turn = turn.index
        turn.blocks.append(block)
        self._changed(block)
        return block

    def _changed(self, block: Block) -> None:
        block.touch()
        self.changed[id(block)] = block

    def take_changes(self) -> tuple[list[Block], int]:
        changed, new_turns = list(self.changed.values()), self.new_turns
        self.changed.clear()
        self.new_turns = 0
        return changed, new_turns

    def block_count(self) -> int:
        return sum(len(turn.blocks) for turn in self.turns)

    # -- the reducer ---------------------------------------------------------------------
    def apply(self, event: Any) -> None:
        self.events += 1
        if event.ts > self.status.last_ts:
            self.status.last_ts = event.ts
        agent = getattr(event, "agent_id", "") or ""
        if self.root_id is None and getattr(event, "parent_id", None) is None and agent:
            self.root_id = agent
        if agent and self.root_id is not None and agent != self.root_id:
            self._subagent(event)
            return
        handler = getattr(self, "_on_" + event.type.replace(".", "_"), None)
        if handler is not None:
            handler(event)

    def _on_session_started(self, event: Any) -> None:
        s = self.status
        s.model, s.session_id, s.repo, s.branch = event.model, event.session_id, event.repo, event.branch
        s.base_commit, s.mode = event.base_commit, event.mode
        s.started = s.started or event.ts
        s.state, s.ended = "running", 0.0
        for name in ("context_window", "sandbox", "max_steps", "max_time"):
            value = getattr(event, name, None)
            if value:
                setattr(s, name, value)
        if event.resumed:
            self.add(Block("notice", text=f"resumed session {event.session_id} (model {event.model})"))
        elif event.task:
            self.add(Block("user", text=event.task))

    def _on_turn_started(self, event: Any) -> None:
        self.status.step = event.step
        self.status.state = "running"
        self._assistant = None
        self._turn_started, self._first_token = event.ts, 0.0
        if self.current.blocks:
            self.turns.append(Turn(len(self.turns), event.step))
            self.new_turns += 1
        else:
            self.current.step = event.step

    def _assistant_block(self, step: int) -> Block:
        if self._assistant is None:
            self._assistant = self.add(Block("assistant", key=f"step-{step}"))
        return self._assistant

    def _on_text_delta(self, event: Any) -> None:
        self._first_token = self._first_token or event.ts
        block = self._assistant_block(event.step)
        block.text += event.text
        self._changed(block)

    def _on_reasoning_delta(self, event: Any) -> None:
        self._first_token = self._first_token or event.ts
        block = self._assistant_block(event.step)
        block.reasoning += event.text
        self._changed(block)

    def _on_assistant_message(self, event: Any) -> None:
        if not event.content and not event.reasoning and self._assistant is None:
            return
        block = self._assistant_block(event.step)
        if event.content and block.text != event.content:
            block.text = event.content
        if event.reasoning and block.reasoning != event.reasoning:
            block.reasoning = event.reasoning
        block.status = "done"
        self._changed(block)

    def _on_tool_started(self, event: Any) -> None:
        self._assistant = None  # text after a tool call is a new block
        block = Block("tool", key=event.call_id, title=tool_title(event.name, event.arguments), status="running")
        block.meta.update(name=event.name, arguments=event.arguments, started=event.ts)
        self._tools[event.call_id] = self.add(block)

    def _on_tool_finished(self, event: Any) -> None:
        block = self._tools.pop(event.call_id, None)
        if block is None:  # started before the log we read began
            block = self.add(Block("tool", key=event.call_id, title=tool_title(event.name, event.arguments)))
        block.status = "error" if event.is_error else "ok"
        block.output = event.output
        block.duration_ms = event.duration_ms or max(0.0, (event.ts - block.meta.get("started", event.ts)) * 1000)
        self._changed(block)

    def _on_tests_run(self, event: Any) -> None:
        block = Block("tests", title=event.command, status="ok" if event.ok else "error")
        block.meta.update(passed=event.passed, failed=event.failed, errors=event.errors, skipped=event.skipped)
        block.lines = list(event.failing)
        self.add(block)

    def _on_repair_tried(self, event: Any) -> None:
        detail = f" — {event.detail}" if event.detail else ""
        self.add(Block("notice", text=f"repair: {event.name} ({event.path}{f' line {event.line}' if getattr(event, 'line', 0) else ''}) #{event.sample}: {event.outcome}{detail}"))

    def _on_file_changed(self, event: Any) -> None:
        self._pending_files.extend(event.changes)

    def _on_checkpoint(self, event: Any) -> None:
        previous = self.checkpoints[-1][1] if self.checkpoints else self.status.base_commit
        self.checkpoints.append((event.step, event.commit))
        block = Block("checkpoint", title=f"checkpoint step {event.step}", text=event.commit)
        block.meta.update(step=event.step, commit=event.commit, previous=previous, repo=self.status.repo)
        block.lines = [f"{c.get('kind', '?')[0].upper()} {c.get('path', '')}" for c in self._pending_files]
        self._pending_files = []
        self.add(block)

    def _on_todo_updated(self, event: Any) -> None:
        self.todo = list(event.items)
        block = Block("todo", title=f"plan ({sum(i.get('status') == 'done' for i in self.todo)}/{len(self.todo)} done)")
        block.lines = [f"{_TODO_MARK.get(i.get('status', ''), '[ ]')} {i.get('text', '')}" for i in self.todo]
        self.add(block)

    def _on_compaction(self, event: Any) -> None:
        self.add(Block("compaction", text=f"context compacted ({event.strategy}): {event.tokens_before:,} → {event.tokens_after:,} tokens"))
        self.status.context_used = event.tokens_after

    def _on_usage(self, event: Any) -> None:
        s = self.status
        s.context_used = event.input_tokens + event.output_tokens
        s.tokens_reused += event.cached_input_tokens
        evaluated = max(0, event.input_tokens - event.cached_input_tokens)
        s.tokens_evaluated += evaluated
        s.output_tokens += event.output_tokens
        first = self._first_token or event.ts
        if self._turn_started and first > self._turn_started and evaluated:
            s.prefill_tps = evaluated / (first - self._turn_started)
        if event.ts > first and event.output_tokens:
            s.gen_tps = event.output_tokens / (event.ts - first)

    def _on_context_packed(self, event: Any) -> None:
        if event.prefill_tokens_per_second and self.status.prefill_tps is None:
            self.status.prefill_tps = event.prefill_tokens_per_second
        self.add(Block("notice", text=f"repository packed: {event.tokens:,} tokens of {event.budget:,} ({event.mode}; {event.files_whole} files whole, {event.files_map} in the map)"))

    def _on_budget_warning(self, event: Any) -> None:
        if event.budget == "steps":
            self.status.max_steps = int(event.limit)
        elif event.budget == "time":
            self.status.max_time = float(event.limit)
        self.add(Block("error", title="budget", text=f"{event.budget} budget {event.fraction:.0%} used ({event.used:g} of {event.limit:g})"))

    def _on_error(self, event: Any) -> None:
        kind = "notice" if event.kind == "notice" else "error"
        self.add(Block(kind, title=event.kind, text=event.message))

    def _on_rewound(self, event: Any) -> None:
        self.add(Block("notice", text=f"rewound to step {event.to_step} (from {event.from_step}); files at {event.commit[:10]}"))

    def _on_session_finished(self, event: Any) -> None:
        s = self.status
        s.state, s.ended, s.outcome = "finished", event.ts, event.status
        block = Block("finished", title=event.status, text=event.summary, status=event.status)
        block.meta.update(steps=event.steps, duration_ms=event.duration_ms, exit_code=event.exit_code)
        self.add(block)

    # the run-control events (kcode.session.control)
    def _on_steering_queued(self, event: Any) -> None:
        self.status.queued += 1
        self._queued.append(self.add(Block("user", key=getattr(event, "steer_id", ""), text=event.text, status="queued")))

    def _on_steering_delivered(self, event: Any) -> None:
        self.status.queued = max(0, self.status.queued - 1)
        steer_id = getattr(event, "steer_id", "")
        block = next((b for b in self._queued if steer_id and b.key == steer_id), None) or next((b for b in self._queued if b.text == event.text), None)
        if block is None:
            self.add(Block("user", text=event.text, status="delivered"))
            return
        self._queued.remove(block)
        block.status = "delivered"
        self._changed(block)

    def _on_interrupted(self, event: Any) -> None:
        scope = getattr(event, "scope", "step")
        if scope == "step":
            self.status.state = "waiting"
        self.add(Block("notice", text="step interrupted; the run waits for your message" if scope == "step" else "run stopped"))

    def _on_approval_requested(self, event: Any) -> None:
        block = Block("approval", key=event.request_id, title=getattr(event, "needs", ""), text=event.command, status="pending")
        block.meta.update(reason=getattr(event, "reason", ""))
        self.pending_approvals[event.request_id] = self.add(block)

    def _on_approval_resolved(self, event: Any) -> None:
        block = self.pending_approvals.pop(event.request_id, None)
        if block is not None:
            block.status = event.decision
            block.meta["answer"] = getattr(event, "reason", "")
            self._changed(block)

    # -- sub-agents ----------------------------------------------------------------------
    def _subagent(self, event: Any) -> None:
        agent = event.agent_id
        block = self._agents.get(agent)
        if block is None:
            parent = getattr(event, "parent_id", None) or ""
            depth = self._agents[parent].meta["depth"] + 1 if parent in self._agents else 1
            block = self.add(Block("agent", key=agent, title=agent, status="running"))
            block.meta.update(parent=parent, depth=depth, steps=0, tools=0)
            self._agents[agent] = block
        kind = event.type
        line = ""
        if kind == "session.started":
            block.title = f"{agent}: {_short(event.task, 60)}"
        elif kind == "turn.started":
            block.meta["steps"] = event.step
        elif kind == "tool.finished":
            block.meta["tools"] += 1
            line = f"{'✗' if event.is_error else '✓'} {tool_title(event.name, event.arguments)}"
        elif kind == "assistant.message" and event.content:
            line = "› " + _short(event.content, 120)
        elif kind == "error":
            line = "! " + _short(event.message, 120)
        elif kind == "session.finished":
            block.status = event.status
            line = f"■ {event.status}: {_short(event.summary, 120)}"
        else:
            return
        if line:
            block.lines.append(line)
            del block.lines[:-SUBAGENT_LINES]
        self._changed(block)


_TODO_MARK = {"done": "[x]", "in_progress": "[~]", "pending": "[ ]"}
