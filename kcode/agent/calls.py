"""Running a step's tool calls, for the loop (:class:`kcode.agent.loop.Agent` has these
methods): in order, each under its own cancel token (a child of the step's, itself a child of
the run's), every result recorded in the conversation; a call the user interrupted the step
before gets a result that says so, so the conversation stays valid.
"""

from __future__ import annotations

import time
from dataclasses import replace

from kcode.agent.notes import loop_note
from kcode.errors import Submitted
from kcode.events import TestsRun, TodoUpdated, ToolCallFinished, ToolCallStarted
from kcode.llm.base import ToolCall
from kcode.tools.base import ToolResult
from kcode.tools.plan import finish_result
from kcode.tools.testing import detect_test_command

__all__ = ["ToolCalls"]


class ToolCalls:
    """The tool-running part of the agent loop (a mixin: the state is the Agent's)."""

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
            if self._step_cancel.cancelled:  # interrupted: the calls not started get a result saying so
                self._add({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": loop_note("call_skipped")})
                continue
            try:
                results.append(self._run_tool(call, suffix=reminder if call is calls[-1] else ""))
            except Submitted as handed_in:
                submitted = handed_in
        return results, submitted

    def _run_tool(self, call: ToolCall, *, record: bool = True, suffix: str = "") -> ToolResult:
        self.bus.emit(ToolCallStarted(step=self.step, call_id=call.id, name=call.name, arguments=call.arguments))
        started = time.monotonic()
        submitted = None
        self._call_cancel = self._step_cancel.child()  # the run's and the step's cancel reach the call, not back
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
