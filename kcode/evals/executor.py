"""Where eval instances run: :mod:`kcode.executor` (local workers or Ray), shared with the swarm."""

from __future__ import annotations

from kcode.executor import Executor, LocalExecutor, RayExecutor, create_executor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "create_executor"]
