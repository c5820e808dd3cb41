"""Rebuild a session's state from its log: for resume (after any stop, ``kill -9`` included)
and for rewind.

The state at the end of every completed step (``turn.completed``) is kept as a snapshot.
Whatever came after the last one — a step cut short by a crash or an interrupt — is not part
of the recovered state: its messages are dropped and its tool calls reported as interrupted,
and the caller rolls its file changes back to the last checkpoint. A ``rewound`` event
restores an earlier snapshot; the steps after it stay in the log as abandoned history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcode.events import (
    Checkpoint,
    Compaction,
    MessageAdded,
    Rewound,
    SessionFinished,
    SessionStarted,
    TodoUpdated,
    ToolCallFinished,
    ToolCallStarted,
    TurnCompleted,
    TurnStarted,
    Usage,
)
from kcode.llm.base import Message, TokenUsage
from kcode.session import read_events

__all__ = ["Recovered", "StepSnapshot", "recover"]


@dataclass
class StepSnapshot:
    step: int
    messages: list[Message]  # shared, append-only list; only the first ``length`` belong here
    length: int
    todo: list[dict]
    model_state: dict[str, Any]
    agent_state: dict[str, Any]
    head: str | None
    usage: tuple[int, int, int]

    def conversation(self) -> list[Message]:
        return list(self.messages[: self.length])


@dataclass
class Recovered:
    last: StepSnapshot
    snapshots: dict[int, StepSnapshot]
    elapsed: float
    interrupted_calls: list[str] = field(default_factory=list)  # "name (call id)" cut short

    @property
    def step(self) -> int:
        return self.last.step


def recover(log_path: Path) -> Recovered:
    """The state at the end of the last completed step (or before the first step: what of
    the opening was logged, nothing for a log never written)."""
    committed = StepSnapshot(0, [], 0, [], {}, {}, None, (0, 0, 0))
    if not log_path.exists():  # killed between creating the session and opening its log
        return Recovered(committed, {}, 0.0)
    snapshots: dict[int, StepSnapshot] = {}
    current: list[Message] = committed.messages
    todo: list[dict] | None = None
    head: str | None = None
    step_usage = TokenUsage()
    in_flight: dict[str, str] = {}
    elapsed, segment_start, last_ts = 0.0, None, 0.0

    def discard_uncommitted() -> None:
        nonlocal current, todo, head, step_usage
        current = committed.messages
        del current[committed.length :]
        todo, head, step_usage = None, None, TokenUsage()
        in_flight.clear()

    own: str | None = None  # this session's agent id: a sub-agent's events in the log are its own session's
    for event in read_events(log_path):
        if own is None and isinstance(event, SessionStarted):
            own = event.session_id
        elif own and event.agent_id and event.agent_id != own:
            continue
        last_ts = event.ts or last_ts
        if isinstance(event, SessionStarted):
            if segment_start is not None:  # the previous run died without finishing
                elapsed += max(0.0, last_ts - segment_start)
            segment_start = event.ts
            if committed.step > 0 or event.resumed:
                discard_uncommitted()
            if committed.head is None:
                committed.head = event.base_commit
        elif isinstance(event, MessageAdded):
            current.append(event.message)
            if 0 not in snapshots:  # before the first step: the opening messages (system, task)
                committed.length = len(current)
        elif isinstance(event, TurnStarted):
            snapshots.setdefault(0, committed)
        elif isinstance(event, Compaction):
            current = list(event.messages)
        elif isinstance(event, TodoUpdated):
            todo = event.items
        elif isinstance(event, Usage):
            step_usage.add(TokenUsage(event.input_tokens, event.cached_input_tokens, event.output_tokens))
        elif isinstance(event, Checkpoint):
            head = event.commit
        elif isinstance(event, ToolCallStarted):
            in_flight[event.call_id] = f"{event.name} ({event.call_id})"
        elif isinstance(event, ToolCallFinished):
            in_flight.pop(event.call_id, None)
        elif isinstance(event, TurnCompleted):
            total = committed.usage
            committed = StepSnapshot(
                step=event.step,
                messages=current,
                length=len(current),
                todo=todo if todo is not None else committed.todo,
                model_state=event.model_state,
                agent_state=event.agent_state,
                head=head or committed.head,
                usage=(total[0] + step_usage.input_tokens, total[1] + step_usage.cached_input_tokens, total[2] + step_usage.output_tokens),
            )
            snapshots[event.step] = committed
            todo, head, step_usage = None, None, TokenUsage()
            in_flight.clear()
        elif isinstance(event, Rewound):
            target = snapshots.get(event.to_step)
            if target is not None:
                committed = target
                for later in [s for s in snapshots if s > event.to_step]:
                    del snapshots[later]
                discard_uncommitted()
        elif isinstance(event, SessionFinished) and segment_start is not None:
            elapsed += max(0.0, event.ts - segment_start)
            segment_start = None
    if segment_start is not None:
        elapsed += max(0.0, last_ts - segment_start)
    interrupted = list(in_flight.values())
    discard_uncommitted()
    return Recovered(committed, snapshots, elapsed, interrupted)
