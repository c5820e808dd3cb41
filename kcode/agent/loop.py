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
from dataclasses import InitVar, dataclass, field, replace
from typing import Any

from kcode.agent.budgets import Budget, BudgetWatch
from kcode.agent.compaction import CompactionPolicy, compact, conversation_tokens
from kcode.agent.guards import LoopGuard, canonical_call
from kcode.agent.notes import answer_notes, format_instructions_note
from kcode.agent.plan_reminder import PlanReminder
from kcode.agent.retry import RetryPolicy
from kcode.agent.verify import Verification, WorkTree
from kcode.cancel import CancelToken
from kcode.errors import BudgetExhausted, Interrupted, KcodeError, ModelError, Submitted, TransientModelError
from kcode.events import (AssistantMessage, Checkpoint, Compaction, ErrorEvent, EventBus, FileChanged, MessageAdded, ReasoningDelta,
                          SessionFinished, TestsRun, TextDelta, TodoUpdated, ToolCallFinished, ToolCallStarted, TurnCompleted, TurnStarted, Usage)
from kcode.llm.base import ChatModel, Message, ReasoningChunk, StepEnd, TextChunk, TokenUsage, ToolCall
from kcode.tools.base import ToolContext, ToolRegistry, ToolResult
from kcode.tools.plan import finish_result
from kcode.tools.testing import detect_test_command
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
class Agent:
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
    task: str = ""  # the user's task (is a finish without changes acceptable?)
    # rebuilds the system prompt with a fresh repository pack (focus files, failing files)
    repack: Callable[[list[str], list[str]], str] | None = None
    step: int = 0
    elapsed_before: float = 0.0  # time spent in earlier runs of a resumed session
    usage: TokenUsage = field(default_factory=TokenUsage)
    state: InitVar[dict[str, Any] | None] = None  # the agent_state saved with the step to go on from
    plan: PlanReminder = field(init=False)
    verify: Verification = field(init=False)
    _budgets: BudgetWatch = field(init=False)
    _work: WorkTree = field(init=False)
    _started: float = field(default=0.0, init=False)
    _last_text: str = field(default="", init=False)
    _prompt_tokens: int = field(default=0, init=False)  # size of the last prompt plus what was added since
    _call_cancel: CancelToken | None = field(default=None, init=False)  # the running tool call's

    def __post_init__(self, state: dict[str, Any] | None) -> None:
        saved = state or {}
        self.guard.restore(saved.get("guard", {}))
        self.plan = PlanReminder.restore(saved)
        self.verify = Verification.restore(saved, task=self.task, auto_test=self.auto_test)
        self._budgets = BudgetWatch(self.budget)
        self._work = WorkTree(run_tests=self._auto_tests, checkpoint=self._checkpoint, changes=lambda: None if self.workspace is None else self.workspace.changed_files())

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._started = time.monotonic()
        if self.compaction is not None:
            self._prompt_tokens = conversation_tokens(self.messages, self.model.count_tokens)
        status, summary = "error", ""
        self.ctx.cancel = self.ctx.cancel.child()  # the time limit cancels this run, not its caller's token
        out_of_time = lambda: False  # noqa: E731
        try:
            with self._budgets.time_limit(self.budget.max_time - self.elapsed_before, self.ctx.cancel) as out_of_time:
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
        end = self._call_model()
        calls = [call for call in end.tool_calls if call.error is None]
        broken = [call for call in end.tool_calls if call.error is not None]
        self._record_answer(end, calls)
        results, submitted = self._run_calls(calls)
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
        saved = {"guard": self.guard.state(), "verify": self.verify.saved(), "plan": self.plan.saved()}
        self.bus.emit(TurnCompleted(step=self.step, model_state=self.model.state(), agent_state=saved, **end.usage.as_dict()))
        if check.submitted is not None:
            raise check.submitted
        if verdict.stop:
            raise BudgetExhausted("progress", f"stopped: {verdict.stop}")
        if check.stop:
            raise BudgetExhausted("progress", f"stopped: {check.stop}")
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")

    def _begin_step(self) -> None:
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")
        self._budgets.check(steps=self.step, seconds=self._elapsed(), tokens=self.usage.input_tokens + self.usage.output_tokens, emit=self.bus.emit)
        self.step += 1
        self.ctx.step = self.step
        self.bus.emit(TurnStarted(step=self.step))
        if hasattr(self.model, "withheld_tools"):  # a local model's grammar can leave tools out
            self.model.withheld_tools = frozenset(self.verify.withheld_tools() | self.guard.repeated_tools())
        if self.compaction is not None and self._prompt_tokens > self.compaction.threshold:
            self._compact()

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
                if self.ctx.cancel.wait(delay):
                    raise Interrupted("interrupted by the user") from error
        raise AssertionError("unreachable")

    def _stream_once(self) -> StepEnd:
        for chunk in self.model.stream(self.messages, self.tools.specs(), cancel=self.ctx.cancel):
            if self.ctx.cancel.cancelled:
                raise Interrupted("interrupted by the user")
            if isinstance(chunk, TextChunk):
                self.bus.emit(TextDelta(step=self.step, text=chunk.text))
            elif isinstance(chunk, ReasoningChunk):
                self.bus.emit(ReasoningDelta(step=self.step, text=chunk.text))
            elif isinstance(chunk, StepEnd):
                return chunk
        raise ModelError("the model's stream ended without a result")

    # -- tools ---------------------------------------------------------------------------

    def interrupt_tool_call(self) -> bool:
        """Stop the running tool call (a command's process group is killed), not the run: the
        model gets its result, cancelled, and the run goes on. From any thread; False: none ran."""
        token = self._call_cancel
        if token is not None:
            token.cancel()
        return token is not None

    def _run_calls(self, calls: list[ToolCall]) -> tuple[list[ToolResult], Submitted | None]:
        """Run the step's calls in order, the plan reminder (when due) on the last one's
        result. A finish raises Submitted: its result is stored like any other (a finish
        sent back leaves a valid conversation) and verification decides after the step."""
        reminder = self.plan.suffix(self.step, [call.name for call in calls], self.ctx.state.todo)
        results: list[ToolResult] = []
        submitted = None
        for call in calls:
            try:
                results.append(self._run_tool(call, suffix=reminder if call is calls[-1] else ""))
            except Submitted as handed_in:
                submitted = handed_in
        return results, submitted

    def _run_tool(self, call: ToolCall, *, record: bool = True, suffix: str = "") -> ToolResult:
        self.bus.emit(ToolCallStarted(step=self.step, call_id=call.id, name=call.name, arguments=call.arguments))
        started = time.monotonic()
        submitted = None
        self._call_cancel = self.ctx.cancel.child()  # the run's cancel reaches the call, not back
        try:
            result = self.tools.execute(call, replace(self.ctx, cancel=self._call_cancel))
        except Submitted as handed_in:  # the finish tool: its result is stored, then the step goes on
            result, submitted = finish_result(), handed_in
        finally:
            self._call_cancel = None
        duration = round((time.monotonic() - started) * 1000, 1)
        self.bus.emit(ToolCallFinished(step=self.step, call_id=call.id, name=call.name, arguments=call.arguments, output=result.output, is_error=result.is_error, data=result.data, duration_ms=duration))
        if record:
            self._add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result.output + suffix})
        tests = result.data.get("tests")
        if tests:
            self.bus.emit(TestsRun(step=self.step, **{k: v for k, v in tests.items() if k != "exit_code"}))
        if "todo" in result.data:
            self.bus.emit(TodoUpdated(step=self.step, items=result.data["todo"]))
        if submitted is not None:
            raise submitted
        return result

    def _auto_tests(self) -> ToolResult | None:
        """The tests, run by kcode for verification (the result is not stored); None: no test command."""
        if not (self.ctx.test_command or detect_test_command(self.ctx.root)):
            return None
        return self._run_tool(ToolCall(f"auto_tests_{self.step}", "run_tests", {}), record=False)

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
