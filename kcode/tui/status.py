"""The status line: model, context, tokens reused/evaluated, speeds, step, time, sandbox, branch."""

from __future__ import annotations

import time

from rich.markup import escape
from textual.widgets import Static

from kcode.tui.blocks import update_in_place
from kcode.tui.state import Status

__all__ = ["StatusLine", "status_text", "short_model", "format_tokens", "format_seconds"]


def format_tokens(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n:.0f}"


def format_seconds(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def short_model(name: str, limit: int = 28) -> str:
    """``scripted:/a/b/fix.json`` → ``scripted:fix.json``; a GGUF path → its file name."""
    if "/" in name:
        kind, sep, path = name.rpartition(":") if ":" in name.split("/")[0] else ("", "", name)
        name = f"{kind}{sep}{path.rstrip('/').rsplit('/', 1)[-1]}"
    return name if len(name) <= limit else name[: limit - 1] + "…"


def status_text(s: Status, now: float | None = None) -> str:
    """The status line as markup; a figure no event carried yet is left out."""
    parts = [f"[bold]{escape(short_model(s.model) or '…')}[/]"]
    window = f"/{format_tokens(s.context_window)}" if s.context_window else ""
    if s.context_used or window:
        share = f" ({s.context_used / s.context_window:.0%})" if s.context_window else ""
        parts.append(f"ctx {format_tokens(s.context_used)}{window}{share}")
    if s.tokens_reused or s.tokens_evaluated:
        parts.append(f"reused {format_tokens(s.tokens_reused)} / eval {format_tokens(s.tokens_evaluated)}")
    speeds = []
    if s.prefill_tps:
        speeds.append(f"pp {format_tokens(s.prefill_tps)}")
    if s.gen_tps:
        speeds.append(f"tg {format_tokens(s.gen_tps)}")
    if speeds:
        parts.append(" ".join(speeds) + " tok/s")
    parts.append(f"step {s.step}" + (f"/{s.max_steps}" if s.max_steps else ""))
    elapsed = format_seconds(s.elapsed(now if now is not None else time.time()))
    parts.append(elapsed + (f"/{format_seconds(s.max_time)}" if s.max_time else ""))
    if s.sandbox:
        parts.append(f"sandbox {escape(s.sandbox)}")
    if s.branch:
        parts.append(f"⎇ {escape(s.branch)}")
    state = {"running": "[yellow]running[/]", "waiting": "[cyan]waiting for you[/]", "finished": f"[green]{escape(s.outcome or 'finished')}[/]"}.get(s.state, escape(s.state))
    if s.queued:
        state += f" [cyan]({s.queued} queued)[/]"
    parts.append(state)
    return " │ ".join(parts)


class StatusLine(Static):
    DEFAULT_CSS = "StatusLine { height: auto; max-height: 2; background: $panel; color: $text; padding: 0 1; }"

    def __init__(self, status: Status, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.status = status
        self._last = ""

    def on_mount(self) -> None:
        self.set_interval(1.0, self.draw)  # the clock moves even when no event comes
        self.draw()

    def draw(self) -> None:
        self.status.live = bool(getattr(getattr(self.app, "handle", None), "running", True))
        text = status_text(self.status)
        if text != self._last:
            self._last = text
            update_in_place(self, text)  # the clock ticks without a layout of the screen
