"""kcode.agent: one task, end to end (the runner), and the policy loop under it.

The public names load on first use (PEP 562), so importing one agent module does not import
the runner and everything it composes."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "RunOutcome": "runner", "run_task": "runner", "resume_task": "runner", "rewind_session": "runner",
    "apply_session": "runner", "process_start": "runner",
    "Agent": "loop", "Budget": "loop", "RunResult": "loop", "RetryPolicy": "retry", "EXIT_CODES": "loop",
    "Pruned": "prune", "prune_sessions": "prune",
}  # fmt: skip

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kcode.agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kcode.agent.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
