"""The running agent's side of steering, interrupts, stops and approvals.

One :class:`RunControl` serves one run at a time (a local frontend keeps one across the
runs of its session). Commands reach it two ways: a frontend in this process calls its
methods (``kcode.agent.live.LocalRunHandle``); a frontend elsewhere writes them to the
session's control channel (:mod:`kcode.session.control`), which a thread of the run polls
every 50 ms, headless runs included. Whatever a command does is logged as events, so the
log alone tells an attacher (and a resume) what happened:

- ``steer``: :class:`SteeringQueued`; the loop delivers it (:class:`SteeringDelivered`, then
  the user message) when the next step starts. A resume re-queues what was queued but never
  reached a completed step.
- ``interrupt``: :class:`InterruptEvent` (step); the step's cancel token is cancelled (the
  model's stream and the running tool call stop), the step ends, the run goes on. One sent
  between two steps ends the next step before its model call (as Esc in Claude Code and
  Codex stops whatever the agent is doing); one sent while the run waits for the user's
  message has nothing to end (a notice says so). While a
  frontend is attached (a local one, or a writer on the channel), the run then waits for its
  next message, or for the frontend to go away.
- ``stop``: :class:`InterruptEvent` (run); the run's token is cancelled, the run ends as
  ``interrupted`` (resumable with ``kcode resume``).
- ``answer``: :class:`ApprovalResolved` for a waiting :class:`ApprovalRequested`.
- ``compact``: a notice that it is requested; when the next step starts the loop compacts
  the conversation (a summary of its middle, ``kcode.agent.compaction``) and logs the
  :class:`Compaction` with the tokens before and after.

Approvals (``approvals = "on-request"``): a tool that needs more than the sandbox profile
allows asks :meth:`RunControl.approve` (the ``approve`` of its ``ToolContext``), which
blocks until an answer or an interrupt. "always" holds for the session, for that kind of
need (network, or writing outside the repository), and is restored on resume from the log.
With ``approvals = "never"`` no tool asks.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcode.cancel import CancelToken
from kcode.errors import UsageError
from kcode.events import (
    ApprovalRequested,
    ApprovalResolved,
    ErrorEvent,
    Event,
    InterruptEvent,
    SessionStarted,
    SteeringDelivered,
    SteeringQueued,
    TurnCompleted,
)
from kcode.session import read_events
from kcode.session.control import DECISIONS, ControlReader
from kcode.tools.base import Approval

__all__ = ["RunControl", "APPROVAL_MODES", "pending_from_log"]

APPROVAL_MODES = ("never", "on-request")
POLL_SECONDS = 0.05


@dataclass
class _Waiting:
    request: ApprovalRequested
    answered: threading.Event
    decision: str = ""
    reason: str = ""


class RunControl:
    """Steering queue, interrupts, stop and approvals of a run (see the module docstring).

    ``approvals``: "never" or "on-request". ``interactive``: a frontend in this process
    drives the run (after a step interrupt the run waits for its message)."""

    def __init__(self, *, approvals: str = "never", interactive: bool = False, poll_seconds: float = POLL_SECONDS) -> None:
        if approvals not in APPROVAL_MODES:
            raise UsageError(f"unknown approvals mode {approvals!r} (use one of: {', '.join(APPROVAL_MODES)})")
        self.approvals = approvals
        self.interactive = interactive
        self._poll_seconds = poll_seconds
        self._lock = threading.RLock()
        self._steering: list[tuple[str, str]] = []  # (steer id, text), in order
        self._held: list[Event] = []  # events from before a run was attached
        self._waiting: dict[str, _Waiting] = {}
        self._always: set[str] = set()
        self._agent: Any = None  # kcode.agent.loop.Agent while a run is attached
        self._reader: ControlReader | None = None
        self._input = threading.Event()  # set when a message or a stop comes in
        self._waiting_input = False  # wait_for_input is waiting (an interrupt has nothing to end)
        self._compact = False  # a compaction asked for, not yet done by a step

    # -- a run attaches ------------------------------------------------------------------

    @contextmanager
    def attached(self, agent: Any, session_dir: Path) -> Iterator[None]:
        """Serve ``agent``'s run while the block runs: the channel is polled, its tools may
        ask for approval, steering queued before the run (or left by the last one) goes to
        its first step."""
        restored, always = pending_from_log(Path(session_dir) / "events.jsonl", agent.bus.agent_id)
        with self._lock:
            self._agent = agent
            known = {steer_id for steer_id, _ in self._steering}
            self._steering[:0] = [item for item in restored if item[0] not in known]
            self._always |= always
            held, self._held = self._held, []
        if self.approvals == "on-request":
            agent.ctx.approve = self.approve
            agent.ctx.always_allowed = self.always_allowed
        for event in held:
            agent.bus.emit(event)
        self._reader = ControlReader(session_dir)
        stop = threading.Event()
        poller = threading.Thread(target=self._poll, args=(stop,), name="kcode-control", daemon=True)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join(timeout=2)
            with self._lock:
                self._agent, self._reader = None, None
                for waiting in self._waiting.values():
                    waiting.decision, waiting.reason = "deny", "the run ended"
                    waiting.answered.set()
                self._waiting.clear()

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self._poll_seconds):
            reader = self._reader
            if reader is None:
                return
            for command in reader.poll():
                self.apply(command)

    def apply(self, command: dict[str, Any]) -> None:
        """Carry out one command of the channel's form (``{"cmd": ..., ...}``)."""
        cmd = command.get("cmd")
        if cmd == "steer" and isinstance(command.get("text"), str) and command["text"].strip():
            self.steer(command["text"], steer_id=str(command.get("id") or ""))
        elif cmd == "interrupt":
            self.interrupt_step()
        elif cmd == "stop":
            self.stop()
        elif cmd == "compact":
            self.compact()
        elif cmd == "answer" and command.get("decision") in DECISIONS:
            self.answer(str(command.get("request_id", "")), command["decision"], str(command.get("reason", "")))
        else:
            self._emit(ErrorEvent(message=f"ignored a control command kcode cannot carry out: {command!r}", kind="notice"))

    def _emit(self, event: Event) -> None:
        with self._lock:
            agent = self._agent
            if agent is None:
                self._held.append(event)
                return
        agent.bus.emit(event)

    # -- what a frontend asks ------------------------------------------------------------

    def steer(self, text: str, *, steer_id: str = "") -> str:
        """Queue ``text`` for the next step; its id returned."""
        steer_id = steer_id or secrets.token_hex(4)
        with self._lock:
            self._steering.append((steer_id, text))
        self._emit(SteeringQueued(text=text, steer_id=steer_id))
        self._input.set()
        return steer_id

    @property
    def has_steering(self) -> bool:
        with self._lock:
            return bool(self._steering)

    def interrupt_step(self) -> bool:
        """End the current step, or the next one when sent between two steps (the run then
        waits for the user); False when no run is going, or when it already waits for the
        user's message (nothing to interrupt: a notice says so)."""
        agent = self._agent
        if agent is None:
            return False
        if self._waiting_input:
            self._emit(ErrorEvent(message="nothing to interrupt: the run is waiting for your message", kind="notice"))
            return False
        self._emit(InterruptEvent(scope="step", step=agent.step))
        agent.interrupt_step()
        return True

    def stop(self) -> bool:
        """Stop the run (it ends as ``interrupted``); False when no run is going."""
        agent = self._agent
        if agent is None:
            return False
        self._emit(InterruptEvent(scope="run", step=agent.step))
        agent.ctx.cancel.cancel()
        self._input.set()
        return True

    def compact(self) -> bool:
        """Ask for the conversation to be compacted when the next step starts; False when no
        run is going."""
        if self._agent is None:
            return False
        with self._lock:
            self._compact = True
        self._emit(ErrorEvent(message="compaction requested: the conversation is compacted when the next step starts", kind="notice"))
        return True

    def take_compaction(self) -> bool:
        """Whether a compaction was asked for since the last call (the loop's, at a step's start)."""
        with self._lock:
            asked, self._compact = self._compact, False
        return asked

    def answer(self, request_id: str, decision: str, reason: str = "") -> bool:
        """Answer a waiting approval request; False (and a notice) when none has that id."""
        if decision not in DECISIONS:
            raise UsageError(f"unknown decision {decision!r} (use one of: {', '.join(DECISIONS)})")
        with self._lock:
            waiting = self._waiting.pop(request_id, None)
            if waiting is not None and decision == "always":
                self._always.add(waiting.request.needs)
        if waiting is None:
            self._emit(ErrorEvent(message=f"no approval request {request_id!r} is waiting", kind="notice"))
            return False
        waiting.decision, waiting.reason = decision, reason
        self._emit(ApprovalResolved(request_id=request_id, decision=decision, reason=reason))
        waiting.answered.set()
        return True

    # -- what the loop and the tools ask -------------------------------------------------

    def take_steering(self, step: int) -> list[str]:
        """The queued messages, for the step that starts (each logged as delivered)."""
        with self._lock:
            taken, self._steering = self._steering, []
            self._input.clear()
        for steer_id, text in taken:
            self._emit(SteeringDelivered(text=text, steer_id=steer_id, step=step))
        return [text for _, text in taken]

    def wait_for_input(self, cancel: CancelToken) -> None:
        """After a step interrupt: while a frontend is attached, wait for its next message
        (or a stop, or the frontend going away)."""
        try:
            while not cancel.cancelled and not self.has_steering:
                reader = self._reader
                if not (self.interactive or (reader is not None and reader.writer_attached())):
                    return
                self._waiting_input = True
                self._input.wait(self._poll_seconds)
        finally:
            self._waiting_input = False

    def approve(self, needs: str, command: str, reason: str, paths: list[str], cancel: CancelToken) -> Approval:
        """Ask the frontend whether a command may have ``needs`` ("network" or
        "write-outside"); blocks until it answers or ``cancel`` (the tool call's) is set."""
        with self._lock:
            if needs in self._always:
                return Approval("always")
            agent = self._agent
            request = ApprovalRequested(request_id=secrets.token_hex(4), command=command, reason=reason, needs=needs, paths=list(paths), step=0 if agent is None else agent.step)
            waiting = self._waiting[request.request_id] = _Waiting(request, threading.Event())
        self._emit(request)
        while not waiting.answered.wait(self._poll_seconds):
            if cancel.cancelled:
                with self._lock:
                    self._waiting.pop(request.request_id, None)
                self._emit(ApprovalResolved(request_id=request.request_id, decision="deny", reason="interrupted"))
                return Approval("deny", "the user interrupted the step before answering")
        return Approval(waiting.decision, waiting.reason)

    def always_allowed(self) -> frozenset[str]:
        """The needs answered "always" in this session."""
        with self._lock:
            return frozenset(self._always)

    def waiting_requests(self) -> list[ApprovalRequested]:
        with self._lock:
            return [waiting.request for waiting in self._waiting.values()]


def pending_from_log(path: Path, agent_id: str) -> tuple[list[tuple[str, str]], set[str]]:
    """From a session's log: the steering queued but not delivered in a completed step (a
    step a crash cut short is run again, so its messages are queued again), and the needs
    approved "always"."""
    queued: dict[str, str] = {}
    delivered: set[str] = set()
    tentative: set[str] = set()
    needs: dict[str, str] = {}
    always: set[str] = set()
    if not path.exists():
        return [], always
    for event in read_events(path):
        if event.agent_id and agent_id and event.agent_id != agent_id:
            continue
        if isinstance(event, SteeringQueued):
            queued[event.steer_id] = event.text
        elif isinstance(event, SteeringDelivered):
            tentative.add(event.steer_id)
        elif isinstance(event, TurnCompleted):
            delivered |= tentative
            tentative.clear()
        elif isinstance(event, SessionStarted):
            tentative.clear()
        elif isinstance(event, ApprovalRequested):
            needs[event.request_id] = event.needs
        elif isinstance(event, ApprovalResolved) and event.decision == "always" and event.request_id in needs:
            always.add(needs[event.request_id])
    return [(steer_id, text) for steer_id, text in queued.items() if steer_id not in delivered], always
