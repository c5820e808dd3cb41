"""The widgets of the conversation: one per :class:`~kcode.tui.state.Block`, kept light.

Each widget is built from its block and redrawn by :meth:`Synced.sync` when the block's
``version`` moved on. Most kinds are one :class:`~textual.widgets.Static`; the assistant's
text is Rich Markdown re-rendered from the block at each tick (a stream of deltas becomes one
redraw per ~100 ms), its reasoning folded (click, or ctrl+r for all). A tool card is a head
and its output in a :class:`~textual.widgets.Log` (a line-based view that renders only the
lines on screen), folded (enter or click opens it; a failed call's is open); the whole output
is one keypress away (``o`` on a card, ctrl+o for the latest) in
:class:`kcode.tui.screens.TextScreen`.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown as RichMarkdown
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from kcode.tui.state import Block


def _cache_lexers() -> None:
    """Rich looks a code block's pygments lexer up by name at every render (a few ms each);
    a streamed message with code renders ten times a second, so keep the lexers."""
    import functools

    import rich.syntax

    lookup = rich.syntax.get_lexer_by_name
    if not hasattr(lookup, "cache_info"):
        rich.syntax.get_lexer_by_name = functools.lru_cache(maxsize=64)(lookup)


_cache_lexers()

__all__ = ["Synced", "BlockView", "TextView", "ToolCard", "CheckpointView", "view_for", "OUTPUT_HEIGHT", "OUTPUT_KEPT", "format_duration"]

OUTPUT_HEIGHT = 10  # lines of a tool's output shown in its card
OUTPUT_KEPT = 200  # lines a card's view holds (its last); the whole output is in the block
_TOOL_MARK = {"running": "[yellow]⠿[/]", "ok": "[green]✓[/]", "error": "[red]✗[/]"}


def format_duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class Synced:
    """A block's widget: ``draw`` redraws it from its block when the block's version moved."""

    block: Block
    drawn: int

    def sync(self) -> None:
        if self.drawn != self.block.version:
            self.drawn = self.block.version
            self.draw()

    def on_mount(self) -> None:
        self.sync()

    def draw(self) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


class TextView(Synced, Static):
    """Blocks that are one Static: messages, the assistant's text, notices, tests, the plan,
    sub-agent groups (click opens a folded part: reasoning, a sub-agent's lines)."""

    DEFAULT_CSS = "TextView { height: auto; margin: 0 0 1 0; }"

    def __init__(self, block: Block) -> None:
        super().__init__("", classes=f"block block-{block.kind}")
        self.block = block
        self.drawn = -1

    def draw(self) -> None:
        self.update(self.render_block())

    def on_click(self) -> None:
        if self.block.kind in ("agent", "assistant"):
            self.toggle_class("open")
            self.draw()

    def render_block(self) -> RenderableType:
        b, kind = self.block, self.block.kind
        if kind == "assistant":
            parts: list[RenderableType] = []
            if b.reasoning:
                if self.has_class("open") or self.app_show_reasoning():
                    parts.append(Text("▼ reasoning\n" + b.reasoning, style="dim italic"))
                else:
                    parts.append(Text(f"▶ reasoning ({len(b.reasoning.split())} words)", style="dim"))
            if b.text:
                parts.append(RichMarkdown(b.text))
            return Group(*parts)
        if kind == "markup":  # the TUI's own texts (/help), already markup
            return b.text
        if kind == "user":
            note = {"queued": " [dim](queued: delivered at the next step)[/]"}.get(b.status, "")
            return f"[bold cyan]›[/] {escape(b.text)}{note}"
        if kind == "notice":
            return f"[dim]· {escape(b.text)}[/]"
        if kind == "error":
            return f"[bold red]✗ {escape(b.title or 'error')}:[/] {escape(b.text)}"
        if kind == "compaction":
            return f"[magenta]──── {escape(b.text)} ────[/]"
        if kind == "tests":
            m = b.meta
            mark = "[green]✓ tests pass[/]" if b.status == "ok" else "[red]✗ tests fail[/]"
            counts = f"{m['passed']} passed, {m['failed']} failed, {m['errors']} errors" + (f", {m['skipped']} skipped" if m["skipped"] else "")
            failing = "".join(f"\n    [red]{escape(name)}[/]" for name in b.lines[:20])
            more = f"\n    [dim]… {len(b.lines) - 20} more[/]" if len(b.lines) > 20 else ""
            return f"{mark} {counts} [dim]— {escape(b.title)}[/]{failing}{more}"
        if kind == "todo":
            return f"[bold]☰ {escape(b.title)}[/]\n" + "\n".join("  " + escape(line) for line in b.lines)
        if kind == "approval":
            answer = {"pending": "[yellow]waiting for your answer[/]", "once": "[green]allowed once[/]",
                      "always": "[green]allowed for this session[/]", "deny": "[red]denied[/]"}.get(b.status, escape(b.status))  # fmt: skip
            reason = f" [dim]({escape(b.meta['answer'])})[/]" if b.meta.get("answer") else ""
            return f"[bold yellow]? approval ({escape(b.title)}):[/] {escape(b.text)} — {answer}{reason}"
        if kind == "finished":
            m = b.meta
            color = "green" if b.status == "finished" else "yellow"
            return f"[bold {color}]■ {escape(b.status)}[/] after {m.get('steps', 0)} steps ({format_duration(m.get('duration_ms', 0))}): {escape(b.text)}"
        if kind == "agent":
            mark = {"running": "[yellow]⑂[/]", "finished": "[green]⑂[/]"}.get(b.status, "[red]⑂[/]")
            opened = self.has_class("open")
            indent = "  " * (b.meta.get("depth", 1) - 1)
            head = f"{indent}{'▼' if opened else '▶'} {mark} {escape(b.title)} — step {b.meta['steps']}, {b.meta['tools']} tools, {escape(b.status)}"
            return head + ("".join(f"\n{indent}    " + escape(line) for line in b.lines) if opened else "")
        return escape(b.text)

    def app_show_reasoning(self) -> bool:
        return bool(getattr(self.app, "show_reasoning", False))


class BlockView(Synced, Vertical):
    """A block drawn as a head and a body that folds (enter or a click on the head)."""

    can_focus = True
    BINDINGS = [("enter", "toggle", "Open/close")]
    DEFAULT_CSS = """
    BlockView { height: auto; margin: 0 0 1 0; border-left: wide $panel; padding-left: 1; }
    BlockView:focus { border-left: wide $accent; }
    BlockView > .head { height: auto; }
    BlockView > .body { display: none; height: auto; }
    BlockView.open > .body { display: block; }
    """

    def __init__(self, block: Block) -> None:
        super().__init__(classes=f"block block-{block.kind}")
        self.block = block
        self.drawn = -1

    def compose(self) -> ComposeResult:
        yield Static(classes="head")
        yield from self.body()

    def body(self) -> ComposeResult:  # pragma: no cover - every kind overrides it
        yield Static(classes="body")

    def action_toggle(self) -> None:
        self.set_open(not self.has_class("open"))

    def set_open(self, opened: bool) -> None:
        self.set_class(opened, "open")
        self.draw_head()

    def on_click(self) -> None:
        self.action_toggle()

    def mark(self) -> str:
        return "▼" if self.has_class("open") else "▶"

    def draw_head(self) -> None:
        self.query_one(".head", Static).update(self.head())

    def head(self) -> str:  # pragma: no cover - every kind overrides it
        return ""


class ToolCard(BlockView):
    """A tool call: status, duration, and its output (o opens all of it)."""

    BINDINGS = [("o", "full_output", "Full output")]
    DEFAULT_CSS = "ToolCard Log { height: auto; max-height: 10; }"

    def body(self) -> ComposeResult:
        yield Log(classes="body", auto_scroll=False, max_lines=OUTPUT_KEPT)

    def head(self) -> str:
        b = self.block
        duration = f" [dim]{format_duration(b.duration_ms)}[/]" if b.status != "running" else " [dim]running…[/]"
        head = f"{_TOOL_MARK.get(b.status, '·')} [bold]{escape(b.title)}[/]{duration}"
        if b.output:
            count = b.output.count("\n") + 1
            head += f"  [dim]{self.mark()} {count:,} lines of output" + (" — o: all of it" if count > OUTPUT_HEIGHT else "") + "[/]"
        return head

    def draw(self) -> None:
        b = self.block
        if b.output:
            lines = b.output.splitlines()
            log = self.query_one(Log)
            log.clear()
            log.write_lines(lines[-OUTPUT_KEPT:])
            log.styles.height = min(len(lines), OUTPUT_HEIGHT)
            if b.status == "error" and not self.block.meta.get("folded_once"):
                self.block.meta["folded_once"] = True
                self.set_class(True, "open")  # a failed call shows what it said
        self.draw_head()

    def action_full_output(self) -> None:
        from kcode.tui.screens import TextScreen

        self.app.push_screen(TextScreen(self.block.title, self.block.output or "(no output yet)"))


class CheckpointView(BlockView):
    """A checkpoint: its commit and files; opening it shows the step's diff (from git)."""

    def body(self) -> ComposeResult:
        yield Static(classes="body")

    def head(self) -> str:
        b = self.block
        files = f", {len(b.lines)} files" if b.lines else ""
        return f"[bold blue]◆[/] {self.mark()} checkpoint step {b.meta['step']} [dim]{b.meta['commit'][:10]}{files}[/]"

    def draw(self) -> None:
        self.query_one(".body", Static).update("\n".join(escape(line) for line in self.block.lines) or "[dim](no file changes recorded)[/]")
        self.draw_head()

    def set_open(self, opened: bool) -> None:
        super().set_open(opened)
        if opened and not self.block.meta.get("diff_loaded"):
            self.block.meta["diff_loaded"] = True
            self.run_worker(self._load_diff, thread=True, exclusive=True)

    def _load_diff(self) -> None:
        from kcode.tui.diffs import render_unified, step_diff

        text = step_diff(self.block.meta["repo"], self.block.meta["previous"], self.block.meta["commit"])
        self.app.call_from_thread(self.query_one(".body", Static).update, render_unified(text, limit=200))


_VIEWS: dict[str, type] = {"tool": ToolCard, "checkpoint": CheckpointView}


def view_for(block: Block) -> Synced:
    return _VIEWS.get(block.kind, TextView)(block)
