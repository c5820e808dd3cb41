"""The widgets of the conversation: one per :class:`~kcode.tui.state.Block`, kept light.

Each widget is built from its block and redrawn by :meth:`Synced.sync` when the block's
``version`` moved on. Most kinds are one :class:`~textual.widgets.Static`; the assistant's
text is Rich Markdown re-rendered from the block at each tick (a stream of deltas becomes one
redraw per ~100 ms), its reasoning folded (click, or ctrl+r for all). A tool card is one
widget, its head and the last lines of its output, folded (enter or click opens it; a failed
call's is open); the whole output is one keypress away (``o`` on a card, ctrl+o for the
latest) in :class:`kcode.tui.screens.TextScreen`, a line-based view that renders only the
lines on screen.

Every layout of the screen measures every mounted widget, so the widgets are few (one per
block, two for a checkpoint), drawn before they are mounted, and redrawn without a layout
when their height stays (:func:`update_in_place`).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.markdown import Markdown as RichMarkdown
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.containers import Vertical
from textual.widgets import Static

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

__all__ = ["Laid", "Head", "Synced", "BlockView", "TextView", "ToolCard", "CheckpointView", "view_for", "update_in_place", "OUTPUT_HEIGHT", "format_duration"]

OUTPUT_HEIGHT = 10  # lines of a tool's output shown in its card
_TOOL_MARK = {"running": "[yellow]⠿[/]", "ok": "[green]✓[/]", "error": "[red]✗[/]"}


def format_duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def update_in_place(widget: Static, content: RenderableType) -> bool:
    """``widget.update(content)``, asking for a layout only when its height changes: every
    layout reflows the whole screen (all mounted blocks), so a redraw of the same height is a
    repaint of that widget alone. Returns whether a layout was asked for."""
    width = widget.content_region.width if widget.is_mounted else 0
    if not width or widget.styles.height is not None and not widget.styles.height.is_auto:
        widget.update(content, layout=not width)
        return not width
    before = widget.content_region.height
    widget.update(content, layout=False)
    relayout = widget.get_content_height(Size(0, 0), Size(0, 0), width) != before
    if relayout:
        widget.refresh(layout=True)
    return relayout


class Laid:
    """A widget that a layout of the screen sizes once, not twice. Textual sets a widget's
    virtual size from each layout, and that reactive asks for another layout of the whole
    screen whenever it changed: every new or grown block cost two. For the blocks (and the
    conversation's scroll view, whose scrollbars the same call updates) the layout that
    measured them has placed everything already."""

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True) -> bool:
        return super()._size_updated(size, virtual_size, container_size, layout=False)  # type: ignore[misc]


class Head(Laid, Static):
    """The head line of a folding block."""


class Synced(Laid):
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
        self.drawn = block.version  # drawn now: mounting it is then one layout, not a layout and a redraw
        self.update(self.render_block(), layout=False)  # its mount lays it out (a layout asked for now would come after it)

    def draw(self) -> None:
        update_in_place(self, self.render_block())

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
        from textual._context import NoActiveAppError

        try:
            return bool(getattr(self.app, "show_reasoning", False))
        except NoActiveAppError:  # built outside a running app (a test of the widget alone)
            return False


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
        self.drawn = block.version  # its head is drawn in compose
        self.opened_once = False

    def compose(self) -> ComposeResult:
        yield Head(self.head(), classes="head")
        yield from self.body()

    def body(self) -> ComposeResult:  # pragma: no cover - every kind overrides it
        yield Static(classes="body")

    def action_toggle(self) -> None:
        self.set_open(not self.has_class("open"))

    def set_open(self, opened: bool) -> None:
        self.set_class(opened, "open")
        if opened and not self.opened_once:
            self.opened_once = True
            self.draw_body()
        self.draw_head()

    def draw_body(self) -> None:
        """Fill the body: only once it is open (a folded body is not drawn at all)."""

    def on_click(self) -> None:
        self.action_toggle()

    def mark(self) -> str:
        return "▼" if self.has_class("open") else "▶"

    def draw_head(self) -> None:
        update_in_place(self.query_one(".head", Static), self.head())

    def head(self) -> str:  # pragma: no cover - every kind overrides it
        return ""


class ToolCard(Synced, Static):
    """A tool call: status, duration, and its output, folded (enter or a click opens it; a
    failed call's is open). One widget, its head and at most ``OUTPUT_HEIGHT`` lines of the
    output's end: a card costs the screen's layout one widget, whatever the output's size.
    The whole output is one keypress away (``o``): a line-based view that renders only the
    lines on screen (:class:`kcode.tui.screens.TextScreen`)."""

    can_focus = True
    BINDINGS = [("enter", "toggle", "Open/close"), ("o", "full_output", "Full output")]
    DEFAULT_CSS = """
    ToolCard { height: auto; margin: 0 0 1 0; border-left: wide $panel; padding-left: 1; }
    ToolCard:focus { border-left: wide $accent; }
    """

    def __init__(self, block: Block) -> None:
        super().__init__("", classes=f"block block-{block.kind}")
        self.block = block
        self.drawn = block.version
        self._open_failed()
        self.update(self.render_card(), layout=False)

    def head(self) -> str:
        b = self.block
        duration = f" [dim]{format_duration(b.duration_ms)}[/]" if b.status != "running" else " [dim]running…[/]"
        head = f"{_TOOL_MARK.get(b.status, '·')} [bold]{escape(b.title)}[/]{duration}"
        if b.output:
            count = b.output.count("\n") + 1
            head += f"  [dim]{self.mark()} {count:,} lines of output" + (" — o: all of it" if count > OUTPUT_HEIGHT else "") + "[/]"
        return head

    def mark(self) -> str:
        return "▼" if self.has_class("open") else "▶"

    def output_lines(self) -> list[str]:
        """The lines an open card shows: the output's last ``OUTPUT_HEIGHT``."""
        output = self.block.output
        tail = output[-OUTPUT_HEIGHT * 400 :] if len(output) > OUTPUT_HEIGHT * 400 else output  # a long output's end, not all of it split
        return tail.splitlines()[-OUTPUT_HEIGHT:] if output else []

    def render_card(self) -> RenderableType:
        head = Text.from_markup(self.head())
        if not self.has_class("open") or not self.block.output:
            return head
        body = Text("\n".join(self.output_lines()), style="dim", no_wrap=True, overflow="ellipsis")
        return Group(head, body)

    def draw(self) -> None:
        self._open_failed()
        update_in_place(self, self.render_card())

    def _open_failed(self) -> None:
        b = self.block
        if b.output and b.status == "error" and not b.meta.get("folded_once"):
            b.meta["folded_once"] = True
            self.set_class(True, "open")  # a failed call shows what it said

    def action_toggle(self) -> None:
        self.set_open(not self.has_class("open"))

    def set_open(self, opened: bool) -> None:
        self.set_class(opened, "open")
        update_in_place(self, self.render_card())

    def on_click(self) -> None:
        self.action_toggle()

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
        if self.opened_once and not self.block.meta.get("diff_loaded"):
            self.draw_body()
        self.draw_head()

    def draw_body(self) -> None:
        self.query_one(".body", Static).update("\n".join(escape(line) for line in self.block.lines) or "[dim](no file changes recorded)[/]")

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
