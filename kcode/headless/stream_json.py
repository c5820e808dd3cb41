"""``--output-format stream-json``: one JSON object per line on stdout.

Lifecycle (schema in ``stream_json.schema.json``, documented in the README)::

    thread.started → (turn.started → item.started / item.updated / item.completed …
    → turn.completed)* → result

An item is a snapshot with a ``status``; its ``type`` is one of ``agent_message``,
``reasoning``, ``tool_call``, ``command_execution``, ``file_change``, ``todo_list``, ``error``.
Every line names the agent whose event it renders: ``agent_id``, and ``parent_id`` for a
sub-agent.
The renderer is a pure function of the event stream, so replaying a session log prints the
same lines as the live run did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from kcode.events import (
    AssistantMessage,
    ErrorEvent,
    Event,
    FileChanged,
    ReasoningDelta,
    SessionFinished,
    SessionStarted,
    TextDelta,
    TodoUpdated,
    ToolCallFinished,
    ToolCallStarted,
    TurnCompleted,
    TurnStarted,
)

__all__ = ["StreamJsonRenderer", "COMMAND_TOOLS", "RESULT_SUBTYPES"]

COMMAND_TOOLS = {"bash", "run_tests"}
RESULT_SUBTYPES = {
    "finished": "success",
    "budget_exhausted": "error_budget_exhausted",
    "interrupted": "error_interrupted",
    "error": "error_during_execution",
}


class StreamJsonRenderer:
    def __init__(self, out: TextIO, *, include_deltas: bool = True) -> None:
        self._agent: dict[str, str] = {}  # the agent fields of the event being rendered
        self._write: Callable[[dict[str, Any]], None] = lambda obj: (
            out.write(json.dumps({**obj, **self._agent}, ensure_ascii=False) + "\n"),
            out.flush(),
        )
        self._include_deltas = include_deltas
        self._counter = 0
        self._session_id = ""
        self._started_ts = 0.0
        self._open: dict[str, dict[str, Any]] = {}  # "text"/"reasoning"/"todo"/call id → item
        self._turns = 0

    def _new_item(self, **fields: Any) -> dict[str, Any]:
        item = {"id": f"item_{self._counter}", **fields}
        self._counter += 1
        return item

    def _emit(self, kind: str, item: dict[str, Any]) -> None:
        self._write({"type": kind, "item": dict(item)})

    def _stream_delta(self, key: str, item_type: str, text: str) -> None:
        item = self._open.get(key)
        if item is None:
            item = self._open[key] = self._new_item(type=item_type, text=text, status="in_progress")
            self._emit("item.started", item)
        else:
            item["text"] += text
            if self._include_deltas:
                self._emit("item.updated", item)

    def _complete_text(self, key: str, item_type: str, text: str) -> None:
        item = self._open.pop(key, None) or self._new_item(type=item_type, text=text, status="in_progress")
        item.update(text=text, status="completed")
        self._emit("item.completed", item)

    def __call__(self, event: Event) -> None:
        self._agent = {"agent_id": event.agent_id}
        if event.parent_id is not None:
            self._agent["parent_id"] = event.parent_id
        if isinstance(event, SessionStarted):
            self._session_id = event.session_id
            self._started_ts = self._started_ts or event.ts
            self._write({"type": "thread.started", "thread_id": event.session_id, "resumed": event.resumed})
        elif isinstance(event, TurnStarted):
            self._turns += 1
            self._write({"type": "turn.started", "step": event.step})
        elif isinstance(event, TextDelta):
            self._stream_delta("text", "agent_message", event.text)
        elif isinstance(event, ReasoningDelta):
            self._stream_delta("reasoning", "reasoning", event.text)
        elif isinstance(event, AssistantMessage):
            if event.reasoning:
                self._complete_text("reasoning", "reasoning", event.reasoning)
            if event.content:
                self._complete_text("text", "agent_message", event.content)
            self._open.pop("text", None)
            self._open.pop("reasoning", None)
        elif isinstance(event, ToolCallStarted):
            item = self._tool_item(event.name, event.arguments)
            self._open[event.call_id] = item
            self._emit("item.started", item)
        elif isinstance(event, ToolCallFinished):
            item = self._open.pop(event.call_id, None) or self._tool_item(event.name, event.arguments)
            item["status"] = "failed" if event.is_error else "completed"
            if item["type"] == "command_execution":
                item["aggregated_output"] = event.output
                item["exit_code"] = event.data.get("exit_code", event.data.get("tests", {}).get("exit_code"))
                if "tests" in event.data:
                    item["tests"] = {k: v for k, v in event.data["tests"].items() if k != "command"}
            else:
                item["output"] = event.output
            self._emit("item.completed", item)
        elif isinstance(event, FileChanged):
            item = self._new_item(type="file_change", changes=event.changes, status="completed")
            self._emit("item.completed", item)
        elif isinstance(event, TodoUpdated):
            items = [{"text": i["text"], "completed": i["status"] == "done"} for i in event.items]
            todo = self._open.get("todo")
            if todo is None:
                todo = self._open["todo"] = self._new_item(type="todo_list", items=items, status="in_progress")
                self._emit("item.started", todo)
            else:
                todo["items"] = items
                self._emit("item.updated", todo)
        elif isinstance(event, ErrorEvent):
            self._emit("item.completed", self._new_item(type="error", message=event.message, kind=event.kind, status="completed"))
        elif isinstance(event, TurnCompleted):
            usage = {
                "input_tokens": event.input_tokens,
                "cached_input_tokens": event.cached_input_tokens,
                "output_tokens": event.output_tokens,
            }
            self._write({"type": "turn.completed", "step": event.step, "usage": usage})
        elif isinstance(event, SessionFinished):
            todo = self._open.pop("todo", None)
            if todo is not None:
                todo["status"] = "completed"
                self._emit("item.completed", todo)
            self._write(
                {
                    "type": "result",
                    "subtype": RESULT_SUBTYPES.get(event.status, "error_during_execution"),
                    "is_error": event.status != "finished",
                    "result": event.summary,
                    "num_turns": event.steps,
                    "duration_ms": event.duration_ms,
                    "usage": {
                        "input_tokens": event.input_tokens,
                        "cached_input_tokens": event.cached_input_tokens,
                        "output_tokens": event.output_tokens,
                    },
                    "session_id": self._session_id,
                    "exit_code": event.exit_code,
                }
            )

    def _tool_item(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name in COMMAND_TOOLS:
            command = arguments.get("command") or ("(detected test command)" if name == "run_tests" else "")
            return self._new_item(type="command_execution", tool=name, command=command, status="in_progress")
        return self._new_item(type="tool_call", name=name, arguments=arguments, status="in_progress")
