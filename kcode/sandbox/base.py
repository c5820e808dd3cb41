"""The ``Sandbox`` interface: every command the agent runs goes through one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kcode.cancel import CancelToken

__all__ = ["ExecResult", "Sandbox"]


@dataclass
class ExecResult:
    exit_code: int
    output: str  # stdout and stderr merged, capped (head + tail)
    timed_out: bool = False
    cancelled: bool = False
    dropped_bytes: int = 0
    duration: float = 0.0

    def describe(self) -> str:
        """The output as the model sees it, with the exit status on the last line."""
        text = self.output.rstrip("\n")
        if self.timed_out:
            status = f"[timed out after {self.duration:.0f}s; the process group was killed]"
        elif self.cancelled:
            status = "[cancelled; the process group was killed]"
        else:
            status = f"[exit code {self.exit_code}]"
        return f"{text}\n{status}" if text else status


@runtime_checkable
class Sandbox(Protocol):
    """Runs commands confined to a work directory.

    ``command`` is a shell string (run with ``bash -c``) or an argv list. ``env`` adds
    variables on top of the sandbox's own environment.
    """

    name: str
    root: Path

    def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: Path | None = None,
        timeout: float | None = 120.0,
        env: Mapping[str, str] | None = None,
        cancel: CancelToken | None = None,
    ) -> ExecResult: ...
