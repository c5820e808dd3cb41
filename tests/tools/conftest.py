from __future__ import annotations

from pathlib import Path

import pytest

from kcode.llm.base import ToolCall
from kcode.sandbox import LocalSandbox
from kcode.tools import SessionState, ToolContext, default_tools


@pytest.fixture
def ctx(calc_repo: Path, tmp_path: Path) -> ToolContext:
    """The calc repository as a run sees it: small enough to be packed whole, so every file
    counts as seen by the edit tools (tests of the unseen-file rule start from an empty set)."""
    seen = {path.relative_to(calc_repo).as_posix() for path in calc_repo.rglob("*") if path.is_file() and ".git" not in path.parts}
    return ToolContext(root=calc_repo, sandbox=LocalSandbox(calc_repo), state=SessionState(seen_files=seen, whole_files=set(seen)), scratch_dir=tmp_path / "scratch")


@pytest.fixture
def call(ctx: ToolContext):
    """Run a tool through the registry, as the loop does."""
    registry = default_tools()

    def run(name: str, **arguments):
        return registry.execute(ToolCall("call_1", name, arguments), ctx)

    return run
