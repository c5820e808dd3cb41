"""The local runner: no isolation beyond its own process group.

Used only when the user chose ``--sandbox off``; every other profile goes through
bubblewrap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kcode.cancel import CancelToken
from kcode.sandbox._process import run_process
from kcode.sandbox.base import ExecResult
from kcode.sandbox.project import prepend_path

__all__ = ["LocalSandbox", "command_argv", "NONINTERACTIVE_ENV"]

# Keep tools from paging or prompting: there is no terminal on the other end.
NONINTERACTIVE_ENV = {
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    "TERM": "dumb",
    "PYTHONUNBUFFERED": "1",
    "PIP_NO_INPUT": "1",
    "DEBIAN_FRONTEND": "noninteractive",
}


def command_argv(command: str | Sequence[str]) -> list[str]:
    return ["bash", "-c", command] if isinstance(command, str) else list(command)


class LocalSandbox:
    name = "off"

    def __init__(self, root: Path, *, head_bytes: int = 5000, tail_bytes: int = 5000, path_prefix: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.path_prefix = path_prefix  # the project's environment, first on PATH
        self._head = head_bytes
        self._tail = tail_bytes

    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = 120.0,
        env: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
        on_output: Callable[[bytes], None] | None = None,
    ) -> ExecResult:
        full_env = {**os.environ, **NONINTERACTIVE_ENV, **(env or {})}
        if self.path_prefix:
            full_env["PATH"] = prepend_path(full_env.get("PATH", os.defpath), self.path_prefix)
        return run_process(
            command_argv(command),
            cwd=cwd or self.root,
            env=full_env,
            timeout=timeout,
            cancel=cancel,
            head_bytes=self._head,
            tail_bytes=self._tail,
            on_output=on_output,
        )
