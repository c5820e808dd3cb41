"""``bash``: run a shell command in the sandbox, in the work tree."""

from __future__ import annotations

from pydantic import Field

from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["BashTool"]


class BashParams(Params):
    command: str = Field(description="The shell command to run (bash -c), in the repository root.")
    timeout: float = Field(default=120, gt=0, le=3600, description="Seconds before the process group is killed.")


class BashTool(Tool):
    name = "bash"
    Params = BashParams
    may_change_files = True

    def run(self, params: BashParams, ctx: ToolContext) -> ToolResult:
        result = ctx.sandbox.run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
        return ToolResult(
            result.describe(),
            is_error=result.exit_code != 0 or result.timed_out,
            data={
                "exit_code": result.exit_code,
                "timed_out": result.timed_out,
                "dropped_bytes": result.dropped_bytes,
                "duration_ms": round(result.duration * 1000, 1),
            },
        )
