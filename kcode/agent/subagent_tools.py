"""The ``task`` and ``swarm`` tools: the model starts sub-agents (kcode.agent.subagents)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kcode.agent.subagents import REPORT_LIMIT, SubagentSpec, Subagents
from kcode.errors import ToolError
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["SwarmTool", "TaskTool", "SWARM_REPORT_LIMIT"]

SWARM_REPORT_LIMIT = 16384  # bytes of a swarm's combined report


class TaskParams(Params):
    description: str = Field(description="A few words naming the sub-task (shown in the log).")
    prompt: str = Field(description="Everything the sub-agent needs to know: it sees nothing of your conversation.")
    mode: Literal["explore", "edit"] = Field(default="explore", description="explore: read and report, no writes. edit: change files in its own work tree; merged into yours when it ends.")
    max_steps: int | None = Field(default=None, ge=1, description="At most this many steps (default: the run's per-sub-agent cap).")


class TaskTool(Tool):
    name = "task"
    Params = TaskParams
    may_change_files = True

    def __init__(self, subagents: Subagents) -> None:
        self.subagents = subagents

    def run(self, params: TaskParams, ctx: ToolContext) -> ToolResult:
        report = self.subagents.run(SubagentSpec(params.description, params.prompt, params.mode, params.max_steps))
        text = report.render(REPORT_LIMIT)
        return ToolResult(text, is_error=report.status == "error" and not report.summary, data={"session_id": report.session_id, "merged": report.merged,
                          "conflicts": report.conflicts}, changed_files=report.merged)


class SwarmParams(Params):
    description: str = Field(description="A few words naming the fan-out.")
    prompt_template: str = Field(description="The prompt of every sub-agent, with {item} where each item goes.")
    items: list[str] = Field(min_length=1, description="One sub-agent per item.")
    mode: Literal["explore", "edit"] = Field(default="explore", description="As for task; edit agents should touch disjoint files.")
    max_parallel: int | None = Field(default=None, ge=1, description="Sub-agents at once (default: the run's max_parallel).")


class SwarmTool(Tool):
    name = "swarm"
    Params = SwarmParams
    may_change_files = True

    def __init__(self, subagents: Subagents) -> None:
        self.subagents = subagents

    def run(self, params: SwarmParams, ctx: ToolContext) -> ToolResult:
        if "{item}" not in params.prompt_template:
            raise ToolError("prompt_template must contain {item}: it is filled in once per item")
        limits = self.subagents.limits
        left = limits.max_agents - self.subagents.started
        if len(params.items) > left:
            raise ToolError(f"{len(params.items)} items, but this run may start only {left} more sub-agents (at most {limits.max_agents}); split the work into fewer items")
        specs = [SubagentSpec(f"{params.description} [{i + 1}/{len(params.items)}] {item[:40]}", params.prompt_template.replace("{item}", item), params.mode)
                 for i, item in enumerate(params.items)]
        reports = self.subagents.run_many(specs, params.max_parallel)
        counts: dict[str, int] = {}
        for report in reports:
            counts[report.status] = counts.get(report.status, 0) + 1
        merged = sum(r.merged for r in reports)
        conflicts = [r for r in reports if r.conflicts]
        head = f"swarm {params.description}: {len(reports)} sub-agents, " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if params.mode == "edit":
            head += f"; {merged} merged, {len(conflicts)} conflicts"
        per = max(256, (SWARM_REPORT_LIMIT - len(head) - 64) // max(1, len(reports)))
        body = "\n\n".join(r.render(per) for r in reports)
        text = (head + "\n\n" + body)[:SWARM_REPORT_LIMIT]
        return ToolResult(text, data={"sub_agents": [r.session_id for r in reports], "merged": merged, "conflicts": len(conflicts)},
                          changed_files=merged > 0)
