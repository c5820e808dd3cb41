from __future__ import annotations

from pathlib import Path

import pytest

from kcode.llm.base import ToolCall
from kcode.sandbox import LocalSandbox
from kcode.tools import SessionState, ToolContext, default_tools


@pytest.fixture
def ctx(calc_repo: Path, tmp_path: Path) -> ToolContext:
    return ToolContext(root=calc_repo, sandbox=LocalSandbox(calc_repo), state=SessionState(), scratch_dir=tmp_path / "scratch")


@pytest.fixture
def call(ctx: ToolContext):
    """Run a tool through the registry, as the loop does."""
    registry = default_tools()

    def run(name: str, **arguments):
        return registry.execute(ToolCall("call_1", name, arguments), ctx)

    return run
