"""The event vocabulary: everything the agent does, as typed records.

The loop emits events; every consumer (session log, headless renderers, the TUI, the eval
harness) reads the same stream through an :class:`EventBus`. An event serialises to one
JSON object ``{"type": ..., "ts": ..., "agent_id": ..., **fields}``; :func:`event_from_dict`
reverses it, so a session log replays to the same sequence.

Every event names the agent that emitted it: ``agent_id`` is the agent's session id (the
top-level agent's is the session's own), ``parent_id`` the id of the agent that started it
(``None``, and left out of the dict, for the top-level agent). The bus stamps both, so emit
sites never pass them and a sub-agent's bus can carry its own ids.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Event",
    "SessionStarted",
    "TurnStarted",
    "TextDelta",
    "ReasoningDelta",
    "AssistantMessage",
    "MessageAdded",
    "ToolCallStarted",
    "ToolCallFinished",
    "FileChanged",
    "TestsRun",
    "RepairTried",
    "Checkpoint",
    "TodoUpdated",
    "Usage",
    "TurnCompleted",
    "BudgetWarning",
    "Compaction",
    "ContextPacked",
    "EnvironmentResolved",
    "Rewound",
    "ErrorEvent",
    "SessionFinished",
    "SteeringQueued",
    "SteeringDelivered",
    "ApprovalRequested",
    "ApprovalResolved",
    "InterruptEvent",
    "EventBus",
    "event_from_dict",
    "EVENT_TYPES",
]

EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(kw_only=True)
class Event:
    """Base of all events. ``ts``, ``agent_id`` and ``parent_id`` are set by the bus when the
    event is emitted (an event forwarded from another agent's bus keeps its own)."""

    type: ClassVar[str] = "event"
    ts: float = 0.0
    agent_id: str = ""
    parent_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        EVENT_TYPES[cls.type] = cls

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if data["parent_id"] is None:  # the top-level agent: no parent to name
            del data["parent_id"]
        return {"type": self.type, **data}


@dataclass(kw_only=True)
class SessionStarted(Event):
    type: ClassVar[str] = "session.started"
    session_id: str
    task: str
    repo: str
    workdir: str
    branch: str
    base_commit: str
    model: str
    mode: str = "worktree"  # or "in-place"
    resumed: bool = False
    serving: str = ""  # where a local model runs: "in process", or which kept-alive server
    subagents: str = ""  # how sub-agents are served: in parallel, queued on the model, or off (and why)
    # what a status line shows from the start (0 / "": not known, e.g. an older log)
    context_window: int = 0
    sandbox: str = ""  # the sandbox profile
    max_steps: int = 0
    max_time: float = 0.0  # seconds


@dataclass(kw_only=True)
class TurnStarted(Event):
    type: ClassVar[str] = "turn.started"
    step: int


@dataclass(kw_only=True)
class TextDelta(Event):
    type: ClassVar[str] = "text.delta"
    step: int
    text: str


@dataclass(kw_only=True)
class ReasoningDelta(Event):
    type: ClassVar[str] = "reasoning.delta"
    step: int
    text: str


@dataclass(kw_only=True)
class AssistantMessage(Event):
    """The model's complete text (and reasoning) for one step."""

    type: ClassVar[str] = "assistant.message"
    step: int
    content: str
    reasoning: str = ""


@dataclass(kw_only=True)
class MessageAdded(Event):
    """A message appended to the model-facing conversation (what resume rebuilds)."""

    type: ClassVar[str] = "message.added"
    message: dict[str, Any]


@dataclass(kw_only=True)
class ToolCallStarted(Event):
    type: ClassVar[str] = "tool.started"
    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass(kw_only=True)
class ToolCallFinished(Event):
    type: ClassVar[str] = "tool.finished"
    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]
    output: str
    is_error: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0


@dataclass(kw_only=True)
class FileChanged(Event):
    type: ClassVar[str] = "file.changed"
    step: int
    changes: list[dict[str, str]]  # [{"path": ..., "kind": "add" | "update" | "delete"}]


@dataclass(kw_only=True)
class TestsRun(Event):
    type: ClassVar[str] = "tests.run"
    step: int
    command: str
    ok: bool
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class RepairTried(Event):
    """One candidate fix of the test-driven repair phase (kcode.agent.repair), tried before
    the loop's first step: a definition the failing tests point at, rewritten by the model,
    or one of its lines written again (the model's fill-in-the-middle mode)."""

    type: ClassVar[str] = "repair.tried"
    step: int
    path: str
    name: str  # the definition rewritten
    sample: int  # 1, 2, ...: the model's n-th rewrite of it (of that line, for a line)
    outcome: str  # "fixed" | "partial" | "failing" | "regressed" | "unchanged" | "duplicate" | "no_code" | "syntax_error"
    detail: str = ""  # the tests' counts, or why it was not run
    diff: str = ""  # the candidate against the file as it was (empty when none was made)
    duration_ms: float = 0.0
    line: int = 0  # a line of the definition filled in again by the model (0: the whole definition rewritten)


@dataclass(kw_only=True)
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    step: int
    commit: str
    ref: str


@dataclass(kw_only=True)
class TodoUpdated(Event):
    type: ClassVar[str] = "todo.updated"
    step: int
    items: list[dict[str, str]]  # [{"text": ..., "status": "pending" | "in_progress" | "done"}]


@dataclass(kw_only=True)
class Usage(Event):
    """Token usage of one model call."""

    type: ClassVar[str] = "usage"
    step: int
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


@dataclass(kw_only=True)
class TurnCompleted(Event):
    type: ClassVar[str] = "turn.completed"
    step: int
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    model_state: dict[str, Any] = field(default_factory=dict)
    agent_state: dict[str, Any] = field(default_factory=dict)  # guards, edit-test state


@dataclass(kw_only=True)
class BudgetWarning(Event):
    type: ClassVar[str] = "budget.warning"
    budget: str  # "steps" | "time" | "tokens"
    fraction: float
    used: float
    limit: float


@dataclass(kw_only=True)
class Compaction(Event):
    type: ClassVar[str] = "compaction"
    step: int
    strategy: str
    tokens_before: int
    tokens_after: int
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class ContextPacked(Event):
    """The repository was packed into the prompt's stable prefix."""

    type: ClassVar[str] = "context.packed"
    mode: str
    tokens: int
    budget: int
    files_whole: int = 0
    files_map: int = 0
    files_skipped: int = 0
    tokenizer: str = ""
    seconds: float = 0.0
    # how the budget was chosen (kcode.llm.prefill.choose_pack_budget)
    budget_reason: str = ""  # "time" | "window" | "flag"
    budget_why: str = ""  # "time: 20 s at 41 tok/s", "window share 40 %", "--pack-budget"
    prefill_tokens_per_second: float | None = None
    expected_prefill_seconds: float | None = None  # the first step's, with this pack
    fixed_prompt_tokens: int = 0  # system prompt + tool schemas
    fixed_prompt_cached: bool = False  # restored from the prefix cache instead of evaluated
    restored_tokens: int = 0  # pack tokens expected from the prefix cache
    prefill_settings: str = ""  # llama.cpp's: threads, batch sizes, flash attention, KV type


@dataclass(kw_only=True)
class EnvironmentResolved(Event):
    """How commands see the project: where the files appear, which interpreter and
    environment they use, what of the checkout's ignored files they see read-only."""

    type: ClassVar[str] = "environment.resolved"
    path: str  # where commands see the files (the checkout's path)
    python: str = ""
    python_version: str = ""
    environment: str = ""  # the venv or conda prefix, "" for none
    environment_source: str = ""
    shown: list[str] = field(default_factory=list)
    left_out: int = 0
    note: str = ""  # a limitation, e.g. no remapping without a sandbox


@dataclass(kw_only=True)
class Rewound(Event):
    """Files and conversation were restored to the end of ``to_step``; later steps stay in the
    log as an abandoned branch of history (their files under ``abandoned_ref``)."""

    type: ClassVar[str] = "rewound"
    to_step: int
    from_step: int
    commit: str
    abandoned_ref: str = ""


@dataclass(kw_only=True)
class ErrorEvent(Event):
    type: ClassVar[str] = "error"
    message: str
    kind: str = "error"
    recoverable: bool = True
    step: int = 0


@dataclass(kw_only=True)
class SessionFinished(Event):
    type: ClassVar[str] = "session.finished"
    status: str  # "finished" | "budget_exhausted" | "interrupted" | "error"
    summary: str
    exit_code: int
    steps: int
    duration_ms: float
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


@dataclass(kw_only=True)
class SteeringQueued(Event):
    """A message the user sent while the run was busy; it reaches the model as a user message
    at the start of the next step (:class:`SteeringDelivered`). ``steer_id`` pairs the two,
    so a resume re-queues what was queued but never delivered."""

    type: ClassVar[str] = "steering.queued"
    text: str
    steer_id: str = ""


@dataclass(kw_only=True)
class SteeringDelivered(Event):
    """A queued message was added to the conversation (its ``message.added`` follows)."""

    type: ClassVar[str] = "steering.delivered"
    text: str
    steer_id: str = ""
    step: int = 0  # the step it opens


@dataclass(kw_only=True)
class ApprovalRequested(Event):
    """A command needs more than the sandbox profile allows; the run waits for an answer
    (:class:`ApprovalResolved`). ``needs``: "network" | "write-outside"; ``paths``: for
    write-outside, the host paths it asked to write."""

    type: ClassVar[str] = "approval.requested"
    request_id: str
    command: str
    reason: str
    needs: str
    paths: list[str] = field(default_factory=list)
    step: int = 0


@dataclass(kw_only=True)
class ApprovalResolved(Event):
    """The answer to a request: "once", "always" (for this session, for this ``needs``) or
    "deny" (``reason`` goes back to the model as the command's result)."""

    type: ClassVar[str] = "approval.resolved"
    request_id: str
    decision: str
    reason: str = ""


@dataclass(kw_only=True)
class InterruptEvent(Event):
    """The user interrupted the current step ("step": the model's stream and the running tool
    call stop, the run goes on) or stopped the run ("run": it ends as ``interrupted``, and a
    resume continues it)."""

    type: ClassVar[str] = "interrupted"
    scope: str
    step: int = 0


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its ``to_dict`` form (unknown keys are ignored)."""
    cls = EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    names = _field_names(cls)
    return cls(**{k: v for k, v in data.items() if k in names})


@functools.cache
def _field_names(cls: type[Event]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in subscription order.

    ``clock`` stamps ``ts``; a replay passes events that already carry one. ``agent_id`` and
    ``parent_id`` name the agent whose events this bus carries; they are stamped on events
    that name no agent yet.
    """

    def __init__(self, clock: Callable[[], float] = time.time, *, agent_id: str = "", parent_id: str | None = None) -> None:
        self._subscribers: list[Subscriber] = []
        self._clock = clock
        # one event at a time: the run's control (kcode.agent.run_control) emits from its own thread
        self._lock = threading.RLock()
        self.agent_id = agent_id
        self.parent_id = parent_id

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> Event:
        """Stamp ``event`` and hand it to every subscriber; safe from any thread (one event
        reaches the subscribers at a time, in the order of the calls)."""
        with self._lock:
            if not event.ts:
                event.ts = self._clock()
            if not event.agent_id:
                event.agent_id, event.parent_id = self.agent_id, self.parent_id
            for subscriber in self._subscribers:
                subscriber(event)
        return event
