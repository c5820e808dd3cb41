"""The ``task`` and ``swarm`` tools: the model starts sub-agents (kcode.agent.subagents)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kcode.agent.subagents import REPORT_LIMIT, SubagentLimits, SubagentSpec, Subagents
from kcode.cancel import CancelToken
from kcode.config import Config
from kcode.errors import ToolError, UsageError
from kcode.events import EventBus
from kcode.llm.base import ChatModel
from kcode.session import SessionMeta, SessionStore
from kcode.tools.base import Params, Tool, ToolContext, ToolRegistry, ToolResult
from kcode.vcs.workspace import Workspace

__all__ = ["SwarmTool", "TaskTool", "SWARM_REPORT_LIMIT", "with_subagents", "serving_info", "close_subagents"]

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


# --- the runner's wiring: which runs get the tools, what the header says, the end -------


def with_subagents(config: Config, tools: ToolRegistry, model: ChatModel, store: SessionStore, meta: SessionMeta, workspace: Workspace,
                    bus: EventBus, cancel: CancelToken) -> ToolRegistry:
    """kcode's tools plus ``task`` and ``swarm`` (config ``subagents``: auto = for a model on a
    server, which serves sub-agents in parallel; never for a sub-agent itself)."""
    if config.subagents == "off" or meta.parent_id:
        return tools
    if config.subagents == "auto" and not getattr(model, "parallel_requests", False):
        return tools

    if not (config.executor in ("local", "local:threads") or config.executor == "ray" or config.executor.startswith("ray:")):
        raise UsageError(f"sub-agents run on local or ray[:ADDRESS], not executor {config.executor!r}")
    limits = SubagentLimits(max_agents=config.max_subagents, max_steps=config.max_swarm_steps, agent_steps=config.subagent_steps,
                            agent_time=config.subagent_time, agent_tokens=config.subagent_tokens, max_parallel=config.max_parallel)
    subagents = Subagents(config=config, store=store, meta=meta, workspace=workspace, bus=bus, cancel=cancel, limits=limits, parent_model=model)
    return tools.with_tools(TaskTool(subagents), SwarmTool(subagents))


def serving_info(config: Config, model: ChatModel, parent_id: str | None) -> dict[str, str]:
    """The run header's word on where the model runs and how sub-agents are served (``parent_id``
    "": the caller's own tools, no sub-agent tools)."""
    from kcode.agent.subagents import serving_line

    return {"serving": getattr(model, "serving", ""), "subagents": "off" if parent_id == "" else serving_line(config, model, parent_id)}


def close_subagents(tools: ToolRegistry) -> None:
    """Stop what the run's sub-agents started (a Ray executor)."""
    subagents = getattr(tools.get("task"), "subagents", None)
    if subagents is not None:
        subagents.close()
