"""``bash``: run a shell command in the sandbox, in the work tree.

Approvals (``approvals = "on-request"``: the context's ``approve`` is set). The rule for a
command that needs more than the sandbox profile allows: it failed in the sandbox, and its
output names the missing permission:

- a network error (name resolution, an unreachable network, a refused new connection) under
  a profile without network: it needs ``network``;
- "Read-only file system" for a path that commands may not write (outside the repository,
  its private /tmp and home, the profile's writable paths): it needs ``write-outside``, for
  those paths.

Then the user is asked (``ApprovalRequested``), and on "once" or "always" the command runs
again, once, with that grant (its first, failed run happened too); "always" answers every
later request of the session for that need without asking. A denial is the command's result,
with the user's reason. The model's schema gets no extra parameters for this: the fixed
prompt's size is a budget (kcode.agent.prompt.FIXED_PROMPT_LIMIT). With approvals off
(``approve`` is None) nothing is asked and nothing is run again.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from kcode.sandbox.base import ExecResult, Sandbox
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["BashTool", "network_failure", "read_only_paths"]

_NETWORK_ERRORS = re.compile(
    r"Temporary failure in name resolution|Could not resolve host|Name or service not known|Network is unreachable"
    r"|No address associated with hostname|getaddrinfo failed|nodename nor servname|Failed to establish a new connection",
    re.IGNORECASE,
)
_READ_ONLY = re.compile(r"""['"`]?(/[^\s'"`:]+)['"`]?\s*:?\s*Read-only file system""")


class BashParams(Params):
    command: str = Field(description="The shell command to run (bash -c), in the repository root.")
    timeout: float = Field(default=120, gt=0, le=3600, description="Seconds before the process group is killed.")


def network_failure(output: str) -> str | None:
    """The line of ``output`` that says the network was missing, if one does."""
    match = _NETWORK_ERRORS.search(output)
    if match is None:
        return None
    start = output.rfind("\n", 0, match.start()) + 1
    end = output.find("\n", match.end())
    return output[start : end if end != -1 else None].strip()[:300]


def read_only_paths(output: str) -> list[str]:
    """The paths ``output`` reports as on a read-only file system."""
    return list(dict.fromkeys(match[1] for match in _READ_ONLY.finditer(output)))


class BashTool(Tool):
    name = "bash"
    Params = BashParams
    may_change_files = True

    def run(self, params: BashParams, ctx: ToolContext) -> ToolResult:
        result = ctx.sandbox.run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
        note = ""
        need = None if ctx.approve is None or result.exit_code == 0 or result.cancelled else _failed_need(ctx.sandbox, result)
        if need is not None:
            kind, paths, reason = need
            answer = ctx.approve(kind, params.command, reason, [str(p) for p in paths], ctx.cancel)
            if not answer.granted:
                return _denied(kind, answer.reason, result)
            result = _grant(ctx.sandbox, kind, paths).run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
            grant = "the network" if kind == "network" else "write access to " + ", ".join(map(str, paths))
            note = f"\n[its first run {reason.removeprefix('it ')}; run again with {grant}, as the user allowed]"
        return ToolResult(
            result.describe() + note,
            is_error=result.exit_code != 0 or result.timed_out,
            data={
                "exit_code": result.exit_code,
                "timed_out": result.timed_out,
                "dropped_bytes": result.dropped_bytes,
                "duration_ms": round(result.duration * 1000, 1),
            },
        )


def _can_grant(sandbox: Sandbox) -> bool:
    return hasattr(sandbox, "granted") and hasattr(sandbox, "not_writable")


def _failed_need(sandbox: Sandbox, result: ExecResult) -> tuple[str, list[Path], str] | None:
    """The permission a failed command's output says it lacked, if the sandbox can grant it
    (not without a sandbox: ``--sandbox off`` allows everything already)."""
    if not _can_grant(sandbox):
        return None
    line = network_failure(result.output)
    if line and not sandbox.policy.network:
        return "network", [], f"it failed without the network: {line}"
    outside = sandbox.not_writable(read_only_paths(result.output))
    if outside:
        return "write-outside", outside, "it failed writing outside the repository: " + ", ".join(map(str, outside))
    return None


def _grant(sandbox: Sandbox, need: str, paths: list[Path]) -> Sandbox:
    return sandbox.granted(network=True) if need == "network" else sandbox.granted(writable=paths)


def _denied(need: str, reason: str, first: ExecResult) -> ToolResult:
    what = "the network" if need == "network" else "writing outside the repository"
    text = first.describe() + f"\nNot run again: the user denied {what}" + (f": {reason}" if reason else ".")
    return ToolResult(text, is_error=True, data={"exit_code": first.exit_code, "denied": need, "reason": reason})
