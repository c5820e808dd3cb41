"""The agent loop: ask the model for one step, run its tool calls, checkpoint, repeat.

Control flow uses exceptions (``kcode.errors.AgentStop``) caught in one place, :meth:`Agent.run`;
the ``finish`` tool raises ``Submitted``, which the step holds until verification
(:mod:`kcode.agent.verify`) accepts it or sends it back. Verification, budgets, the plan reminder
and the guards keep typed state, saved with every step (``turn.completed``'s ``agent_state``) for
resume. Texts for the model: ``prompts/loop/``. Synchronous, UI-free: it speaks only in events.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any

from kcode.agent.budgets import Budget, BudgetWatch
from kcode.agent.calls import ToolCalls
from kcode.agent.compaction import CompactionPolicy, compact, conversation_tokens
from kcode.agent.guards import LoopGuard, canonical_call
from kcode.agent.notes import answer_notes, format_instructions_note, loop_note
from kcode.agent.plan_reminder import PlanReminder
from kcode.agent.repair import RepairPolicy, repair
from kcode.agent.retry import RetryPolicy
from kcode.agent.verify import Verification, WorkTree
from kcode.cancel import CancelToken
from kcode.errors import BudgetExhausted, Interrupted, KcodeError, ModelError, StepInterrupted, Submitted, TransientModelError
from kcode.events import (AssistantMessage, Checkpoint, Compaction, ErrorEvent, EventBus, FileChanged, MessageAdded, ReasoningDelta,
                          SessionFinished, TextDelta, TurnCompleted, TurnStarted, Usage)
from kcode.llm.base import ChatModel, Message, ReasoningChunk, StepEnd, TextChunk, TokenUsage, ToolCall
from kcode.tools.base import ToolContext, ToolRegistry, ToolResult
from kcode.vcs.workspace import Workspace

__all__ = ["Agent", "Budget", "RunResult", "RetryPolicy", "EXIT_CODES"]  # Budget, RetryPolicy: their modules'

EXIT_CODES = {"finished": 0, "error": 1, "budget_exhausted": 3, "interrupted": 130}


@dataclass
class RunResult:
    status: str
    summary: str
    steps: int
    duration: float
    usage: TokenUsage
    last_message: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


@dataclass
class Agent(ToolCalls):
    model: ChatModel
    tools: ToolRegistry
    ctx: ToolContext
    bus: EventBus
    workspace: Workspace | None
    messages: list[Message]
    budget: Budget = field(default_factory=Budget)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    compaction: CompactionPolicy | None = None
    guard: LoopGuard = field(default_factory=LoopGuard)
    auto_test: bool = True
    repair: RepairPolicy | None = None  # test-driven repair before the first step (kcode.agent.repair)
    task: str = ""  # the user's task (is a finish without changes acceptable?)
    # rebuilds the system prompt with a fresh repository pack (focus files, failing files)
    repack: Callable[[list[str], list[str]], str] | None = None
    step: int = 0
    elapsed_before: float = 0.0  # time spent in earlier runs of a resumed session
    usage: TokenUsage = field(default_factory=TokenUsage)
    state: InitVar[dict[str, Any] | None] = None  # the agent_state saved with the step to go on from
    control: Any = None  # kcode.agent.run_control.RunControl: steering, step interrupts, approvals
    plan: PlanReminder = field(init=False)
    verify: Verification = field(init=False)
    _budgets: BudgetWatch = field(init=False)
    _work: WorkTree = field(init=False)
    _started: float = field(default=0.0, init=False)
    _last_text: str = field(default="", init=False)
    _prompt_tokens: int = field(default=0, init=False)  # size of the last prompt plus what was added since
    _call_cancel: CancelToken | None = field(default=None, init=False)  # the running tool call's
    _step_cancel: CancelToken = field(default_factory=CancelToken, init=False)  # the step's: a child of the run's
    _interrupt_pending: bool = field(default=False, init=False)  # interrupt_step() not yet handled by a step
    _caller_cancel: CancelToken | None = field(default=None, init=False)  # the token the run was given

    def __post_init__(self, state: dict[str, Any] | None) -> None:
        saved = state or {}
        self.guard.restore(saved.get("guard", {}))
        self.plan = PlanReminder.restore(saved)
        self.verify = Verification.restore(saved, task=self.task, auto_test=self.auto_test)
        self.verify.can_change = bool({"edit_file", "write_file"} & set(self.tools.names))  # not an explore sub-agent
        self._budgets = BudgetWatch(self.budget)
        self._work = WorkTree(run_tests=self._auto_tests, checkpoint=self._checkpoint, changes=lambda: None if self.workspace is None else self.workspace.changed_files())

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._started = time.monotonic()
        if self.compaction is not None:
            self._prompt_tokens = conversation_tokens(self.messages, self.model.count_tokens)
        status, summary = "error", ""
        # the time limit cancels this run's own token, not its caller's; the caller's is held here
        # (a token links to its children weakly: dropped, it could no longer reach this one)
        self._caller_cancel, self.ctx.cancel = self.ctx.cancel, self.ctx.cancel.child()
        out_of_time = lambda: False  # noqa: E731
        try:
            with self._budgets.time_limit(self.budget.max_time - self.elapsed_before, self.ctx.cancel) as out_of_time:
                if self.repair is not None and self.step == 0:
                    repair(self, self.repair)
                while True:
                    self._step()
        except Submitted as stop:
            status, summary = "finished", stop.summary
        except BudgetExhausted as stop:
            status, summary = "budget_exhausted", str(stop)
        except Interrupted as stop:
            status, summary = ("budget_exhausted", f"time budget exhausted ({self.budget.max_time:.0f} seconds), in step {self.step}") if out_of_time() else ("interrupted", str(stop) or "interrupted")
        except KcodeError as error:
            status, summary = "error", f"{type(error).__name__}: {error}"
            self.bus.emit(ErrorEvent(message=summary, kind="fatal", recoverable=False, step=self.step))
        result = RunResult(status, summary, self.step, self._elapsed(), self.usage, self._last_text)
        self.bus.emit(SessionFinished(status=status, summary=summary, exit_code=result.exit_code, steps=self.step, duration_ms=round(result.duration * 1000, 1), **self.usage.as_dict()))
        return result

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self._started)

    # -- one step ------------------------------------------------------------------------

    def _step(self) -> None:
        self._begin_step()
        if self._step_cancel.cancelled and not self.ctx.cancel.cancelled:  # an interrupt sent between steps
            return self._interrupted([])
        try:
            end = self._call_model()
        except StepInterrupted:
            return self._interrupted([])
        calls = [call for call in end.tool_calls if call.error is None]
        broken = [call for call in end.tool_calls if call.error is not None]
        self._record_answer(end, calls)
        results, submitted = self._run_calls(calls)
        if self._step_cancel.cancelled and not self.ctx.cancel.cancelled:
            return self._interrupted(results)
        for call in broken:
            self.bus.emit(ErrorEvent(message=f"malformed call to {call.name}: {call.error}", kind="format_error", step=self.step))
        notes = answer_notes(end.finish_reason, end.usage.output_tokens, broken, self.tools.names)
        changed = any(result.changed_files for result in results) and self._checkpoint()
        check = self.verify.check_step([call.name for call in calls], results, malformed=bool(broken), changed=changed, submitted=submitted, last_text=self._last_text, work=self._work)
        verdict = self.guard.observe(self.step, [canonical_call(call.name, call.arguments) for call in calls], len(broken), check.progressed)
        notes += check.notes + verdict.notes
        if verdict.resend_format:
            notes.append(format_instructions_note(self.tools.specs()))
        if notes:
            self._add({"role": "user", "content": "\n\n".join(notes)})
        if verdict.force_change and self.compaction is not None:
            self._compact(force=True)
        if hasattr(self.model, "require_tool_call"):  # a local model that answered without one must call a tool
            self.model.require_tool_call = not calls and not broken and check.submitted is None
        self.bus.emit(TurnCompleted(step=self.step, model_state=self.model.state(), agent_state=self._saved(), **end.usage.as_dict()))
        if check.submitted is not None:
            raise check.submitted
        if verdict.stop:
            raise BudgetExhausted("progress", f"stopped: {verdict.stop}")
        if check.stop:
            raise BudgetExhausted("progress", f"stopped: {check.stop}")
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")

    def _saved(self) -> dict[str, Any]:
        return {"guard": self.guard.state(), "verify": self.verify.saved(), "plan": self.plan.saved()}

    def _begin_step(self) -> None:
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")
        self._budgets.check(steps=self.step, seconds=self._elapsed(), tokens=self.usage.input_tokens + self.usage.output_tokens, emit=self.bus.emit)
        self.step += 1
        self.ctx.step = self.step
        self._step_cancel = self.ctx.cancel.child()
        if self._interrupt_pending:  # sent after the last step could see it: it ends this one
            self._step_cancel.cancel()
        self.bus.emit(TurnStarted(step=self.step))
        if hasattr(self.model, "withheld_tools"):  # a local model's grammar can leave tools out
            self.model.withheld_tools = frozenset(self.verify.withheld_tools() | self.guard.repeated_tools())
        for text in self.control.take_steering(self.step) if self.control is not None else ():
            self._add({"role": "user", "content": text})
        asked = self.control is not None and self.control.take_compaction()
        if self.compaction is not None and (asked or self._prompt_tokens > self.compaction.threshold):
            self._compact(force=asked)  # one the user asked for summarizes (masking alone may change little)

    def _record_answer(self, end: StepEnd, calls: list[ToolCall]) -> None:
        self.usage.add(end.usage)
        self._prompt_tokens = end.usage.input_tokens + end.usage.cached_input_tokens + end.usage.output_tokens
        self.bus.emit(Usage(step=self.step, **end.usage.as_dict()))
        if end.content or end.reasoning:
            self._last_text = end.content or self._last_text
            self.bus.emit(AssistantMessage(step=self.step, content=end.content, reasoning=end.reasoning))
        # Broken calls are never stored: a malformed message would poison every later request.
        self._add({"role": "assistant", "content": end.content, "reasoning": end.reasoning, "tool_calls": [call.to_message() for call in calls]})

    def _call_model(self) -> StepEnd:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return self._stream_once()
            except TransientModelError as error:
                if attempt == self.retry.attempts:
                    raise ModelError(f"giving up after {attempt} attempts: {error}") from error
                delay = error.retry_after
                if delay is None:
                    delay = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                self.bus.emit(ErrorEvent(message=f"{error} (attempt {attempt}/{self.retry.attempts}, retrying in {delay:.2f}s)", kind="model_retry", step=self.step))
                if self._step_cancel.wait(delay):
                    raise self._cut() from error
        raise AssertionError("unreachable")

    def _stream_once(self) -> StepEnd:
        for chunk in self.model.stream(self.messages, self.tools.specs(), cancel=self._step_cancel):
            if self._step_cancel.cancelled:
                raise self._cut()
            if isinstance(chunk, TextChunk):
                self.bus.emit(TextDelta(step=self.step, text=chunk.text))
            elif isinstance(chunk, ReasoningChunk):
                self.bus.emit(ReasoningDelta(step=self.step, text=chunk.text))
            elif isinstance(chunk, StepEnd):
                return chunk
        if self._step_cancel.cancelled:
            raise self._cut()
        raise ModelError("the model's stream ended without a result")

    def _cut(self) -> Interrupted | StepInterrupted:
        """What a cancelled step raises: the run's stop, or only the step's interrupt."""
        return Interrupted("interrupted by the user") if self.ctx.cancel.cancelled else StepInterrupted("step interrupted")

    def interrupt_step(self) -> None:
        """End the current step (its model stream, its running tool call; calls not started
        are not run), not the run. From any thread. One sent between two steps (the last
        step's calls done, the next not started) ends the next step before its model call,
        as Esc does in Claude Code and Codex: whatever the agent is doing when the user
        presses it stops, and the run waits for the user."""
        self._interrupt_pending = True
        self._step_cancel.cancel()

    def _interrupted(self, results: list[ToolResult]) -> None:
        """The rest of a step the user interrupted: its changes checkpointed, a note to the
        model, the step saved; then, with a frontend attached, wait for its message."""
        self._interrupt_pending = False
        if any(result.changed_files for result in results):
            self._checkpoint()
        self._add({"role": "user", "content": loop_note("step_interrupted")})
        self.bus.emit(TurnCompleted(step=self.step, model_state=self.model.state(), agent_state=self._saved()))
        if self.control is not None:
            self.control.wait_for_input(self.ctx.cancel)
        self._interrupt_pending = False  # an interrupt while the run waited had nothing to end
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")

    # -- work tree and context -----------------------------------------------------------

    def _checkpoint(self) -> bool:
        if self.workspace is None:
            return False
        info = self.workspace.checkpoint(f"kcode: step {self.step}")
        if info is None:
            return False
        self.bus.emit(FileChanged(step=self.step, changes=info.changes))
        self.bus.emit(Checkpoint(step=self.step, commit=info.commit, ref=self.workspace.branch))
        return True

    def _changed_paths(self) -> list[str] | None:
        return None if self.workspace is None else [change["path"] for change in self.workspace.changed_files()]

    def _compact(self, force: bool = False) -> None:
        assert self.compaction is not None
        # a summary re-packs the repository as it is now, focused on this session's files
        fresh = None if self.repack is None else (lambda: self.repack(self._changed_paths() or [], self.verify.failing_files()))
        outcome = compact(self.messages, self.model, self.compaction, self.ctx.state.todo, force_summary=force, repack=fresh)
        self.messages[:] = outcome.messages
        self._prompt_tokens = outcome.tokens_after
        self.bus.emit(Compaction(step=self.step, strategy=outcome.strategy, tokens_before=outcome.tokens_before, tokens_after=outcome.tokens_after, messages=outcome.messages))

    def _add(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.compaction is not None:
            self._prompt_tokens += conversation_tokens([message], self.model.count_tokens)
        self.bus.emit(MessageAdded(message=message))
