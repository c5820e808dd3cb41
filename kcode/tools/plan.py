"""``todo`` (the live plan) and ``finish`` (hand the work in: it raises Submitted)."""

from __future__ import annotations

from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field

from kcode.errors import Submitted
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["TodoTool", "FinishTool", "finish_result", "render_todo"]

_MARKS = {"pending": "[ ]", "in_progress": "[~]", "done": "[x]"}


class TodoItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    status: Literal["pending", "in_progress", "done"] = "pending"


class TodoParams(Params):
    items: list[TodoItem] = Field(description="The whole plan, replacing the previous one.")


def render_todo(items: list[dict[str, str]]) -> str:
    if not items:
        return "(no plan)"
    return "\n".join(f"{_MARKS.get(item['status'], '[ ]')} {item['text']}" for item in items)


class TodoTool(Tool):
    name = "todo"
    Params = TodoParams

    def run(self, params: TodoParams, ctx: ToolContext) -> ToolResult:
        ctx.state.todo = [item.model_dump() for item in params.items]
        done = sum(item.status == "done" for item in params.items)
        return ToolResult(
            f"plan updated ({done}/{len(params.items)} done)\n{render_todo(ctx.state.todo)}",
            data={"todo": ctx.state.todo},
        )


class FinishParams(Params):
    summary: str = Field(description="What was done and how it was verified, for the user.")


class FinishTool(Tool):
    """Raises :class:`~kcode.errors.Submitted`; the loop stores :func:`finish_result` as the
    call's result and decides, after the step, whether the run ends."""

    name = "finish"
    Params = FinishParams

    def run(self, params: FinishParams, ctx: ToolContext) -> NoReturn:
        raise Submitted(params.summary)


def finish_result() -> ToolResult:
    """The result recorded for a ``finish`` call (the model reads it if the finish is sent back)."""
    return ToolResult("finished", data={"finished": True})
