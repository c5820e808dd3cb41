"""``bash``: run a shell command in the sandbox, in the work tree.

Approvals (``approvals = "on-request"``: the context's ``approve`` is set). A command that
needs more than the sandbox profile allows is asked about *before* it runs when its text
shows the need, and then runs exactly once, with the grant (as Claude Code and Codex ask
before a command, never after a first run):

- ``network``, under a profile without network: a command that reaches the network by its
  nature (curl, wget, ssh, rsync, ``git clone/fetch/pull/push``, ``pip install``, ``npm
  install``, ``cargo install``, ``go get``... :func:`network_command`);
- ``write-outside``: a redirection (``>``, ``>>``), ``tee``, or ``touch/mkdir/rm/cp/mv/ln``
  onto a path that commands may not write (outside the repository, its private /tmp and
  home, the profile's writable paths; :func:`written_paths`).

A need the text does not show is found after the fact: the command failed in the sandbox and
its output names the missing permission (a network error: name resolution, an unreachable
network, a refused new connection; "Read-only file system" for such a path). Then it has
run once already; the question says so, and on "once" or "always" it runs again with the
grant. "always" answers every later request of the session for that need without asking,
and with the network allowed "always" every later command gets it from its start (it runs
once). A denial is the command's result, with the user's reason. The model's schema gets no
extra parameters for this: the fixed prompt's size is a budget
(kcode.agent.prompt.FIXED_PROMPT_LIMIT). With approvals off (``approve`` is None) nothing
is asked and nothing is run again.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pydantic import Field

from kcode.sandbox.base import ExecResult, Sandbox
from kcode.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["BashTool", "network_failure", "read_only_paths", "network_command", "written_paths"]

_NETWORK_ERRORS = re.compile(
    r"Temporary failure in name resolution|Could not resolve host|Name or service not known|Network is unreachable"
    r"|No address associated with hostname|getaddrinfo failed|nodename nor servname|Failed to establish a new connection",
    re.IGNORECASE,
)
_READ_ONLY = re.compile(r"""['"`]?(/[^\s'"`:]+)['"`]?\s*:?\s*Read-only file system""")


_NETWORK_TOOLS = frozenset({"curl", "wget", "ssh", "scp", "sftp", "rsync", "nc", "ncat", "telnet", "ftp", "ping"})
_NETWORK_SUBCOMMANDS = {
    "git": {"clone", "fetch", "pull", "push", "ls-remote"},
    "pip": {"install", "download"},
    "pip3": {"install", "download"},
    "npm": {"install", "i", "ci", "add", "update"},
    "yarn": {"install", "add"},
    "pnpm": {"install", "i", "add"},
    "cargo": {"install", "fetch", "update"},
    "go": {"get", "install"},
    "apt": {"install", "update"},
    "apt-get": {"install", "update"},
    "gem": {"install"},
    "docker": {"pull", "push"},
    "uv": {"add", "sync", "pip"},
}
_SEGMENT = re.compile(r"&&|\|\||[;|\n&]")
_PREFIXES = frozenset({"sudo", "env", "time", "nice", "command", "exec", "xargs"})
_WRITE_ALL = frozenset({"touch", "mkdir", "rm", "rmdir", "tee"})  # every operand is written
_WRITE_LAST = frozenset({"cp", "mv", "ln", "install"})  # the last operand is written


def _segments(command: str) -> list[list[str]]:
    """The simple commands of ``command`` as words (a part shlex cannot split is skipped)."""
    out = []
    for part in _SEGMENT.split(command):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            continue
        while words and ("=" in words[0] and not words[0].startswith("=") or words[0] in _PREFIXES):
            words = words[1:]
        if words:
            out.append(words)
    return out


def network_command(command: str) -> str | None:
    """The part of ``command`` that reaches the network by its nature, if one does."""
    for words in _segments(command):
        name = Path(words[0]).name
        rest = [w for w in words[1:] if not w.startswith("-")]
        if name.startswith("python") and words[1:3] == ["-m", "pip"]:
            name, rest = "pip", [w for w in words[3:] if not w.startswith("-")]
        if name in _NETWORK_TOOLS or (rest and rest[0] in _NETWORK_SUBCOMMANDS.get(name, ())):
            return " ".join(words[:3])
    return None


def written_paths(command: str) -> list[str]:
    """The paths ``command`` writes by its text: redirections, and the operands of the
    commands that write (touch, mkdir, rm, tee; the target of cp, mv, ln)."""
    paths = [m[1] for m in re.finditer(r">{1,2}\|?\s*([^\s;&|<>()]+)", command) if not m[1].startswith("&")]
    for words in _segments(command):
        name = Path(words[0]).name
        operands = [w for w in words[1:] if not w.startswith("-") and ">" not in w]
        if name in _WRITE_ALL:
            paths += operands
        elif name in _WRITE_LAST and len(operands) >= 2:
            paths.append(operands[-1])
    return [p for p in dict.fromkeys(paths) if p != "/dev/null" and not p.startswith("/dev/")]


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
        sandbox, note = ctx.sandbox, ""
        if ctx.approve is not None and _can_grant(sandbox):
            if "network" in ctx.always_allowed() and not sandbox.policy.network:
                sandbox = _grant(sandbox, "network", [])  # allowed for the session: from the start
            need = _foreseen_need(sandbox, params.command)
            if need is not None:  # asked before it runs: it runs once, with the grant
                kind, paths, reason = need
                answer = ctx.approve(kind, params.command, reason, [str(p) for p in paths], ctx.cancel)
                if not answer.granted:
                    return _denied(kind, answer.reason, None)
                sandbox = _grant(sandbox, kind, paths)
                note = f"\n[run with {_what(kind, paths)}, as the user allowed]"
        result = sandbox.run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
        need = None if ctx.approve is None or result.exit_code == 0 or result.cancelled else _failed_need(sandbox, result)
        if need is not None:  # a need its text did not show: it has run once, without it
            kind, paths, reason = need
            answer = ctx.approve(kind, params.command, reason, [str(p) for p in paths], ctx.cancel)
            if not answer.granted:
                return _denied(kind, answer.reason, result)
            result = _grant(sandbox, kind, paths).run(params.command, cwd=ctx.root, timeout=params.timeout, cancel=ctx.cancel)
            note += f"\n[its first run {reason.removeprefix('it ')}; run again with {_what(kind, paths)}, as the user allowed]"
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


def _foreseen_need(sandbox: Sandbox, command: str) -> tuple[str, list[Path], str] | None:
    """The permission ``command`` needs by its text (see the module docstring), if the
    sandbox withholds it."""
    if not sandbox.policy.network:
        part = network_command(command)
        if part:
            return "network", [], f"it needs the network ({part})"
    outside = sandbox.not_writable(written_paths(command))
    if outside:
        return "write-outside", outside, "it writes outside the repository: " + ", ".join(map(str, outside))
    return None


def _what(need: str, paths: list[Path]) -> str:
    return "the network" if need == "network" else "write access to " + ", ".join(map(str, paths))


def _grant(sandbox: Sandbox, need: str, paths: list[Path]) -> Sandbox:
    return sandbox.granted(network=True) if need == "network" else sandbox.granted(writable=paths)


def _denied(need: str, reason: str, first: ExecResult | None) -> ToolResult:
    """A denial: of a command asked about before it ran (``first`` None: it never ran), or
    after its failed run in the sandbox."""
    what = "the network" if need == "network" else "writing outside the repository"
    why = f": {reason}" if reason else "."
    if first is None:
        return ToolResult(f"Not run: the user denied {what}{why}", is_error=True, data={"exit_code": None, "denied": need, "reason": reason})
    text = first.describe() + f"\nNot run again: the user denied {what}{why}"
    return ToolResult(text, is_error=True, data={"exit_code": first.exit_code, "denied": need, "reason": reason})
