"""The TUI's test parts: the app on a real run handle (a scripted model, real git, real
commands), and waiting on what the app shows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from kcode.agent.live import LocalRunHandle
from kcode.config import Config
from kcode.tui.app import KcodeApp
from kcode.tui.prompt import History
from tests.conftest import write_script

SIZE = (100, 36)

FINISH = {"content": "All done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]}


def bash(command: str, **extra) -> dict:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command, **extra}}]}


def local_app(repo: Path, turns: list[dict], tmp_path: Path, *, task: str | None = None, approvals: str = "never", sandbox: str = "workspace-write") -> KcodeApp:
    script = write_script(tmp_path / f"script-{time.monotonic_ns()}.json", turns)
    handle = LocalRunHandle(Config(model=f"scripted:{script}", sandbox=sandbox, approvals=approvals), repo=repo)
    from kcode.tui.handles import session_opener

    return KcodeApp(handle, task=task, repo=repo, history=History(tmp_path / "history.jsonl"), open_session=session_opener(handle))


async def until(pilot, test: Callable[[], object], timeout: float = 180.0, what: str = "") -> object:
    """Let the app run until ``test()`` is true (it sees the app's state between frames)."""
    deadline = time.monotonic() + timeout
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            app = pilot.app
            seen = [(b.kind, b.status, b.title or b.text[:40]) for b in blocks(app)]
            raise AssertionError(f"timed out waiting for {what or test}; the app shows {seen}; status {app.transcript.status}")
        await pilot.pause(0.05)


def blocks(app: KcodeApp, kind: str | None = None) -> list:
    return [b for turn in app.transcript.turns for b in turn.blocks if kind is None or b.kind == kind]


def screen_text(app: KcodeApp) -> str:
    """What the terminal shows, as text (the top screen rendered line by line)."""
    return "\n".join(strip.text.rstrip() for strip in app.screen._compositor.render_strips())


async def typed(pilot, text: str) -> None:
    for ch in text:
        await pilot.press("space" if ch == " " else ch)


def run(coroutine) -> None:
    asyncio.run(coroutine)
