"""The agent loop: ask the model for one step, run its tool calls, checkpoint, repeat.

Control flow uses exceptions (``kcode.errors.AgentStop``) caught in one place, :meth:`Agent.run`.
The loop is synchronous and UI-free; everything it does reaches the outside as events.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kcode.agent.compaction import CompactionPolicy, compact, conversation_tokens
from kcode.agent.guards import LoopGuard, canonical_call
from kcode.agent.verify import NO_CHANGES_NOTE, FinishReview
from kcode.errors import BudgetExhausted, Finished, Interrupted, KcodeError, ModelError, TransientModelError
from kcode.events import (
    AssistantMessage,
    BudgetWarning,
    Checkpoint,
    Compaction,
    ErrorEvent,
    EventBus,
    FileChanged,
    MessageAdded,
    ReasoningDelta,
    SessionFinished,
    TestsRun,
    TextDelta,
    TodoUpdated,
    ToolCallFinished,
    ToolCallStarted,
    TurnCompleted,
    TurnStarted,
    Usage,
)
from kcode.llm.base import ChatModel, Message, ReasoningChunk, StepEnd, TextChunk, TokenUsage, ToolCall
from kcode.tools.base import ToolContext, ToolRegistry, ToolResult
from kcode.tools.plan import render_todo
from kcode.tools.testing import detect_test_command
from kcode.vcs.workspace import Workspace

__all__ = ["Agent", "Budget", "RunResult", "RetryPolicy", "EXIT_CODES"]

EXIT_CODES = {"finished": 0, "error": 1, "budget_exhausted": 3, "interrupted": 130}
_WARN_AT = (0.5, 0.8, 0.95)
PLAN_REMINDER_EVERY = 4  # steps between reminders of the plan (on a tool result, stored)

NO_TOOL_CALL = (
    "You did not call a tool. Continue the task by calling one of the tools; "
    "call `finish` with a summary once the task is done and verified."
)
# Answers in a row without any tool call after which the run ends: finished when the work is
# verified (files changed, the last test run passed, nothing edited since), else stopped.
# Small local models often "finish" by writing a made-up tool result instead of calling it.
TEXT_ONLY_FINISH = 2
TEXT_ONLY_STOP = 4


@dataclass
class Budget:
    max_steps: int = 1000
    max_time: float = 12 * 3600.0
    max_tokens: int | None = None


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
class RetryPolicy:
    """kcode's one retry layer: a step whose model call raised a TransientModelError is
    called again, up to ``attempts`` calls in all, after the server's Retry-After or a
    jittered exponential backoff; then the run ends with an error. Backends make one attempt
    per call. It lives here, not in the HTTP backend, because only the loop can redo a step
    whose stream broke after output came, it serves every backend (HTTP, llama.cpp, chaos),
    and each retry is a ``model_retry`` event the user sees."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0


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
    state: dict[str, Any] = field(default_factory=dict)  # agent state saved with every step
    _started: float = 0.0
    _warned: set[tuple[str, float]] = field(default_factory=set)
    _last_text: str = ""
    _prompt_tokens: int = 0  # size of the last prompt plus what was added since

    # -- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._started = time.monotonic()
        self.guard.restore(self.state.get("guard", {}))
        if self.compaction is not None:
            self._prompt_tokens = conversation_tokens(self.messages, self.model.count_tokens)
        status, summary = "error", ""
        try:
            while True:
                self._step()
        except Finished as stop:
            status, summary = "finished", stop.summary
        except BudgetExhausted as stop:
            status, summary = "budget_exhausted", str(stop)
        except Interrupted as stop:
            status, summary = "interrupted", str(stop) or "interrupted"
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
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")
        self._check_budgets()
        self.step += 1
        self.ctx.step = self.step
        self.bus.emit(TurnStarted(step=self.step))
        if self.compaction is not None and self._prompt_tokens > self.compaction.threshold:
            self._compact()
        end = self._call_model()
        self.usage.add(end.usage)
        self._prompt_tokens = end.usage.input_tokens + end.usage.cached_input_tokens + end.usage.output_tokens
        self.bus.emit(Usage(step=self.step, **end.usage.as_dict()))
        valid = [call for call in end.tool_calls if call.error is None]
        broken = [call for call in end.tool_calls if call.error is not None]
        if end.content or end.reasoning:
            self._last_text = end.content or self._last_text
            self.bus.emit(AssistantMessage(step=self.step, content=end.content, reasoning=end.reasoning))
        # Broken calls are never stored: a malformed message would poison every later request.
        self._add({"role": "assistant", "content": end.content, "reasoning": end.reasoning, "tool_calls": [call.to_message() for call in valid]})
        reminder = self._plan_reminder(valid)
        results = [(call, self._run_tool(call, suffix=reminder if call is valid[-1] else "")) for call in valid]
        notes: list[str] = []
        if broken:
            notes.append(self._format_error(broken))
            for call in broken:
                self.bus.emit(ErrorEvent(message=f"malformed call to {call.name}: {call.error}", kind="format_error", step=self.step))
        changed = self._checkpoint() if any(result.changed_files for _, result in results) else False
        if changed:
            self.state["edited_since_tests"] = True
        if any(call.name == "run_tests" for call, _ in results) and valid[-1].name == "run_tests":
            self.state["edited_since_tests"] = False
        new_test_result = self._note_test_results(results)
        ended = not valid or self.ctx.state.finished_summary is not None
        if ended and self.auto_test and self.state.get("edited_since_tests"):
            notes.append(self._auto_test())
            new_test_result = True
        elif not valid and not broken:
            notes.append(self._text_only())
        if any(call.name == "finish" for call in valid):
            notes.append(self._review_finish())
        notes = [note for note in notes if note]
        if valid or broken:
            self.state["text_only"] = 0
        if self.state.get("text_only", 0) >= TEXT_ONLY_STOP and self.ctx.state.finished_summary is None:
            notes.clear()
        verdict = self.guard.observe(self.step, [canonical_call(c.name, c.arguments) for c in valid], len(broken), changed or new_test_result)
        notes.extend(verdict.notes)
        if verdict.resend_format:
            notes.append(self._format_instructions())
        if notes:
            self._add({"role": "user", "content": "\n\n".join(notes)})
        if verdict.force_change and self.compaction is not None:
            self._compact(force=True)
        if hasattr(self.model, "require_tool_call"):
            # a local model that answered without a tool call is constrained to call one next
            self.model.require_tool_call = not valid and not broken and self.ctx.state.finished_summary is None
        self.state["guard"] = self.guard.state()
        self.bus.emit(TurnCompleted(step=self.step, model_state=self.model.state(), agent_state=dict(self.state), **end.usage.as_dict()))
        if self.ctx.state.finished_summary is not None:
            raise Finished(self.ctx.state.finished_summary)
        if verdict.stop:
            raise BudgetExhausted("progress", f"stopped: {verdict.stop}")
        if self.state.get("text_only", 0) >= TEXT_ONLY_STOP:
            raise BudgetExhausted("progress", f"stopped: {TEXT_ONLY_STOP} answers in a row without a tool call")
        if self.ctx.cancel.cancelled:
            raise Interrupted("interrupted by the user")

    def _check_budgets(self) -> None:
        used = {"steps": (self.step, self.budget.max_steps), "time": (self._elapsed(), self.budget.max_time)}
        if self.budget.max_tokens:
            used["tokens"] = (self.usage.input_tokens + self.usage.output_tokens, self.budget.max_tokens)
        for name, (spent, limit) in used.items():
            if spent >= limit:
                unit = {"steps": "steps", "time": "seconds", "tokens": "tokens"}[name]
                raise BudgetExhausted(name, f"{name} budget exhausted ({spent:.0f} of {limit:.0f} {unit})")
            for fraction in _WARN_AT:
                if spent >= fraction * limit and (name, fraction) not in self._warned:
                    self._warned.add((name, fraction))
                    self.bus.emit(BudgetWarning(budget=name, fraction=fraction, used=spent, limit=limit))

    def _plan_reminder(self, calls: list[ToolCall]) -> str:
        """The plan, to append to this step's last tool result every few steps (stored, so
        every request extends the previous one and a local model's KV cache is reused; an
        unstored reminder moving from result to result made each step re-evaluate the last
        result). Not after a todo call: its result shows the plan."""
        if any(call.name == "todo" for call in calls):
            self.state["plan_reminded"] = self.step
            return ""
        if not self.ctx.state.todo or not calls or self.step - self.state.get("plan_reminded", 0) < PLAN_REMINDER_EVERY:
            return ""
        self.state["plan_reminded"] = self.step
        return "\n\nCurrent plan (update it with the todo tool):\n" + render_todo(self.ctx.state.todo)

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

    def _run_tool(self, call: ToolCall, *, record: bool = True, suffix: str = "") -> ToolResult:
        self.bus.emit(ToolCallStarted(step=self.step, call_id=call.id, name=call.name, arguments=call.arguments))
        started = time.monotonic()
        result = self.tools.execute(call, self.ctx)
        duration = round((time.monotonic() - started) * 1000, 1)
        self.bus.emit(ToolCallFinished(step=self.step, call_id=call.id, name=call.name, arguments=call.arguments, output=result.output, is_error=result.is_error, data=result.data, duration_ms=duration))
        if record:
            self._add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result.output + suffix})
        tests = result.data.get("tests")
        if tests:
            self.bus.emit(TestsRun(step=self.step, **{k: v for k, v in tests.items() if k != "exit_code"}))
        if "todo" in result.data:
            self.bus.emit(TodoUpdated(step=self.step, items=result.data["todo"]))
        return result

    def _text_only(self) -> str:
        """An answer without a tool call: a nudge; after TEXT_ONLY_FINISH in a row with the
        work verified, the end of the run (its text is the summary)."""
        count = self.state["text_only"] = self.state.get("text_only", 0) + 1
        tests = self.state.get("last_tests")
        verified = bool(tests and tests[0]) and not self.state.get("edited_since_tests") and self.workspace is not None and bool(self.workspace.changed_files())
        if count >= TEXT_ONLY_FINISH and verified:
            assert self.workspace is not None and tests
            changed = ", ".join(change["path"] for change in self.workspace.changed_files())
            self.ctx.state.finished_summary = (self._last_text.strip() or f"Changed {changed}; {tests[1]} tests pass.") + (
                f"\n\n(kcode ended the run: the model answered {count} times without calling a tool, "
                "after its changes passed the tests.)"
            )
            return ""
        return NO_TOOL_CALL

    def _note_test_results(self, results: list[tuple[ToolCall, ToolResult]]) -> bool:
        """Remember the last test outcome; True when it differs from the previous one."""
        new = False
        for _, result in results:
            tests = result.data.get("tests")
            if tests:
                signature = [tests["ok"], tests["passed"], tests["failed"], tests["errors"], sorted(tests["failing"])]
                new |= signature != self.state.get("last_tests")
                self.state["last_tests"] = signature
        return new

    def _auto_test(self) -> str:
        """The model stopped after editing without running the tests: run them for it."""
        if not (self.ctx.test_command or detect_test_command(self.ctx.root)):
            self.state["edited_since_tests"] = False
            return NO_TOOL_CALL if self.ctx.state.finished_summary is None else ""
        call = ToolCall(f"auto_tests_{self.step}", "run_tests", {})
        result = self._run_tool(call, record=False)
        self._note_test_results([(call, result)])
        self.state["edited_since_tests"] = False
        if self._checkpoint():
            self.state["edited_since_tests"] = True
        return "kcode ran the tests because files changed since they last ran:\n" + result.output

    def _review_finish(self) -> str:
        """Send back a finish after a failing test run or without any change (see
        :mod:`kcode.agent.verify`); "" accepts it."""
        if self.ctx.state.finished_summary is None:
            return ""
        review = FinishReview.from_state(self.state)
        tests = self.state.get("last_tests")
        changed = self.workspace is None or bool(self.workspace.changed_files())
        note = None
        if tests and not tests[0]:
            note = review.failing(list(tests[4]))
        elif not changed:
            note = review.empty(self.task)
        review.save(self.state)
        if note:
            self.ctx.state.finished_summary = None
            return note
        if not changed and review.empty_sent_back:
            self.ctx.state.finished_summary = f"{self.ctx.state.finished_summary.rstrip()} {NO_CHANGES_NOTE}".strip()
        return ""

    def _compact(self, force: bool = False) -> None:
        assert self.compaction is not None
        outcome = compact(self.messages, self.model, self.compaction, self.ctx.state.todo, force_summary=force)
        head = 0  # the prompt head: the fixed system prompt, then the repository part
        while head < len(outcome.messages) and outcome.messages[head].get("role") == "system":
            head += 1
        if outcome.strategy != "mask" and self.repack is not None and head >= 2:
            # the prefix is rebuilt anyway: re-pack the repository as it is now, focused on this
            # session's files (the fixed system prompt before it stays as it is)
            touched = [change["path"] for change in self.workspace.changed_files()] if self.workspace else []
            last_tests = self.state.get("last_tests")
            failing = sorted({test_id.split("::")[0] for test_id in (last_tests[4] if last_tests else [])})
            outcome.messages[head - 1] = {**outcome.messages[head - 1], "content": self.repack(touched, failing)}
            outcome.tokens_after = conversation_tokens(outcome.messages, self.model.count_tokens)
        self.messages[:] = outcome.messages
        self._prompt_tokens = outcome.tokens_after
        self.bus.emit(Compaction(step=self.step, strategy=outcome.strategy, tokens_before=outcome.tokens_before, tokens_after=outcome.tokens_after, messages=outcome.messages))

    def _checkpoint(self) -> bool:
        if self.workspace is None:
            return False
        info = self.workspace.checkpoint(f"kcode: step {self.step}")
        if info is None:
            return False
        self.bus.emit(FileChanged(step=self.step, changes=info.changes))
        self.bus.emit(Checkpoint(step=self.step, commit=info.commit, ref=self.workspace.branch))
        return True

    def _format_error(self, broken: list[ToolCall]) -> str:
        lines = ["Your tool call could not be used, so it was not run:"]
        lines += [f"- {call.name or '(no name)'}: {call.error}" for call in broken]
        lines.append(f"Call a tool with a JSON object as arguments that matches its schema. Available tools: {', '.join(self.tools.names)}.")
        return "\n".join(lines)

    def _format_instructions(self) -> str:
        specs = "\n".join(f"- {spec.name}: {json.dumps(spec.parameters, separators=(',', ':'))}" for spec in self.tools.specs())
        return (
            "Your last tool calls were malformed several times in a row. How to call a tool: "
            "use the tool-calling format of your chat template, with the tool's name and a JSON object of "
            "arguments (double-quoted keys and strings, no comments, no trailing commas) that matches its schema:\n"
            + specs
        )

    def _add(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.compaction is not None:
            self._prompt_tokens += conversation_tokens([message], self.model.count_tokens)
        self.bus.emit(MessageAdded(message=message))
