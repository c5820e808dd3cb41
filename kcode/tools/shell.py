"""``bash``: run a shell command in the sandbox, in the work tree.

Approvals (``approvals = "on-request"``: the context's ``approve`` is set). A command needs
more than the sandbox profile allows when

1. it asks: ``network: true`` under a profile without network, or ``write_paths`` that the
   sandbox does not let commands write (outside the repository, its private /tmp and home);
2. or it failed in the sandbox in a way that names the missing permission: a network error
   (name resolution, unreachable network) under a profile without network, or "Read-only
   file system" for a path outside what commands may write. Then it is run again, once,
   with the approval (so its first, failed run happened too).

Each need is asked for separately (``ApprovalRequested``); "once" grants it to this
command, "always" to every later one of the session; a denial is the command's result, with
the user's reason. With approvals off (``approve`` is None) nothing is asked: the command runs
in the profile as it is, with a note when it asked for more.
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
    network: bool = Field(default=False, description="True if the command needs the network (downloads, installs).")
    write_paths: list[str] = Field(default_factory=list, description="Paths outside the repository the command writes, if any.")


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
        sandbox, notes = ctx.sandbox, []
        granted = {"network": False, "write-outside": False}
        for need, paths, reason in _asked_needs(sandbox, params):
            answer = None if ctx.approve is None else ctx.approve(need, params.command, reason, [str(p) for p in paths], ctx.cancel)
            if answer is None:
                notes.append(f"[{reason}; the sandbox profile {sandbox.name!r} does not allow it, and approvals are off: it ran without]")
            elif not answer.granted:
                return _denied(need, answer.reason)
            else:
                sandbox, granted[need] = _grant(sandbox, need, paths), True
        result = sandbox.run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
        retry = None if ctx.approve is None or result.exit_code == 0 or result.cancelled else _failed_need(sandbox, result, granted)
        if retry is not None:
            need, paths, reason = retry
            answer = ctx.approve(need, params.command, reason, [str(p) for p in paths], ctx.cancel)
            if not answer.granted:
                return _denied(need, answer.reason, first=result)
            result = _grant(sandbox, need, paths).run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
            notes.append(f"[run again with {'the network' if need == 'network' else 'write access to ' + ', '.join(map(str, paths))}, approved by the user]")
        output = "\n".join([result.describe(), *notes])
        return ToolResult(
            output,
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


def _asked_needs(sandbox: Sandbox, params: BashParams) -> list[tuple[str, list[Path], str]]:
    """What the call asks for beyond the profile: (need, paths, reason) each."""
    if not _can_grant(sandbox):  # no sandbox (--sandbox off): everything is allowed already
        return []
    needs = []
    if params.network and not sandbox.policy.network:
        needs.append(("network", [], "the command asks for the network"))
    outside = sandbox.not_writable(params.write_paths) if params.write_paths else []
    if outside:
        needs.append(("write-outside", outside, "the command asks to write outside the repository: " + ", ".join(map(str, outside))))
    return needs


def _failed_need(sandbox: Sandbox, result: ExecResult, granted: dict[str, bool]) -> tuple[str, list[Path], str] | None:
    """The permission a failed command's output says it lacked, if the sandbox can grant it."""
    if not _can_grant(sandbox):
        return None
    line = network_failure(result.output)
    if line and not sandbox.policy.network and not granted["network"]:
        return "network", [], f"it failed without the network: {line}"
    outside = sandbox.not_writable(read_only_paths(result.output))
    if outside and not granted["write-outside"]:
        return "write-outside", outside, "it failed writing outside the repository: " + ", ".join(map(str, outside))
    return None


def _grant(sandbox: Sandbox, need: str, paths: list[Path]) -> Sandbox:
    return sandbox.granted(network=True) if need == "network" else sandbox.granted(writable=paths)


def _denied(need: str, reason: str, first: ExecResult | None = None) -> ToolResult:
    what = "the network" if need == "network" else "writing outside the repository"
    text = f"Not run: the user denied {what}" + (f": {reason}" if reason else ".")
    if first is not None:
        text = first.describe() + "\n" + text.replace("Not run", "Not run again")
    return ToolResult(text, is_error=True, data={"denied": need, "reason": reason})
