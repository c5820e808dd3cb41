"""The widgets of the conversation: one per :class:`~kcode.tui.state.Block`.

Each widget is built from its block and redrawn by :meth:`BlockView.sync` when the block's
``version`` moved on. Tool output goes in a :class:`~textual.widgets.Log` (a line-based view
that renders only the lines on screen), capped in height; the whole output is one keypress
away (``o`` on a card, or ctrl+o for the latest one) in :class:`kcode.tui.screens.TextScreen`.
"""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Log, Markdown, Static

from kcode.tui.state import Block

__all__ = ["BlockView", "view_for", "OUTPUT_HEIGHT", "format_duration"]

OUTPUT_HEIGHT = 10  # lines of a tool's output shown in its card
_TOOL_MARK = {"running": "[yellow]⠿[/]", "ok": "[green]✓[/]", "error": "[red]✗[/]"}


def format_duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class BlockView(Vertical):
    """A block's widget; subclasses draw one kind."""

    DEFAULT_CSS = """
    BlockView { height: auto; margin: 0 0 1 0; }
    BlockView Collapsible { border-top: none; padding: 0; margin: 0; background: transparent; }
    BlockView Collapsible > Contents { padding: 0 0 0 2; }
    """

    def __init__(self, block: Block) -> None:
        super().__init__(classes=f"block-{block.kind}")
        self.block = block
        self.drawn = -1  # the block version on screen

    def sync(self) -> None:
        if self.drawn != self.block.version:
            self.drawn = self.block.version
            self.draw()

    def on_mount(self) -> None:
        self.sync()

    def draw(self) -> None:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


class TextView(BlockView):
    """Blocks that are one line or a few of styled text."""

    def compose(self) -> ComposeResult:
        yield Static(id="body")

    def draw(self) -> None:
        self.query_one("#body", Static).update(self.render_text())

    def render_text(self) -> str:
        b = self.block
        kind = b.kind
        if kind == "user":
            note = {"queued": " [dim](queued: delivered at the next step)[/]"}.get(b.status, "")
            return f"[bold cyan]›[/] {escape(b.text)}{note}"
        if kind == "markup":  # the TUI's own texts (/help), already markup
            return b.text
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
        return escape(b.text)


class AssistantView(BlockView):
    """The model's text as Markdown (appended as it streams) and its reasoning, collapsed."""

    def compose(self) -> ComposeResult:
        yield Collapsible(Static(id="reasoning-text"), title="reasoning", collapsed=True, id="reasoning")
        yield Markdown(id="text")

    def on_mount(self) -> None:
        self._shown = ""
        super().on_mount()

    def draw(self) -> None:
        b = self.block
        reasoning = self.query_one("#reasoning", Collapsible)
        reasoning.display = bool(b.reasoning)
        if b.reasoning:
            reasoning.title = f"reasoning ({len(b.reasoning.split())} words)"
            self.query_one("#reasoning-text", Static).update(escape(b.reasoning))
        markdown = self.query_one("#text", Markdown)
        markdown.display = bool(b.text)
        if b.text.startswith(self._shown):
            if len(b.text) > len(self._shown):
                markdown.append(b.text[len(self._shown):])
        else:
            markdown.update(b.text)
        self._shown = b.text


class ToolCard(BlockView):
    """A tool call: status, duration, and its output (collapsible; enter toggles, o opens all)."""

    can_focus = True
    BINDINGS = [("enter", "toggle", "Output"), ("o", "full_output", "Full output")]
    DEFAULT_CSS = """
    ToolCard { border-left: wide $panel; padding-left: 1; }
    ToolCard:focus { border-left: wide $accent; }
    ToolCard Log { height: auto; max-height: 10; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Collapsible(Log(id="output", auto_scroll=False), title="output", collapsed=True, id="fold")

    def draw(self) -> None:
        b = self.block
        duration = f" [dim]{format_duration(b.duration_ms)}[/]" if b.status != "running" else " [dim]running…[/]"
        self.query_one("#head", Static).update(f"{_TOOL_MARK.get(b.status, '·')} [bold]{escape(b.title)}[/]{duration}")
        fold = self.query_one("#fold", Collapsible)
        fold.display = bool(b.output)
        if b.output:
            lines = b.output.splitlines()
            fold.title = f"output: {len(lines):,} lines" + (" — o: all of it" if len(lines) > OUTPUT_HEIGHT else "")
            log = self.query_one("#output", Log)
            log.clear()
            log.write_lines(lines)
            log.styles.height = min(len(lines), OUTPUT_HEIGHT)
            if b.status == "error" and self.drawn <= 2:
                fold.collapsed = False

    def action_toggle(self) -> None:
        fold = self.query_one("#fold", Collapsible)
        fold.collapsed = not fold.collapsed

    def action_full_output(self) -> None:
        from kcode.tui.screens import TextScreen

        self.app.push_screen(TextScreen(self.block.title, self.block.output or "(no output yet)"))


class CheckpointView(BlockView):
    """A checkpoint: its commit and files; expanding it shows the step's diff (from git)."""

    def compose(self) -> ComposeResult:
        yield Collapsible(Static(id="diff"), title="checkpoint", collapsed=True, id="fold")

    def draw(self) -> None:
        b = self.block
        files = f", {len(b.lines)} files" if b.lines else ""
        fold = self.query_one("#fold", Collapsible)
        fold.title = f"◆ checkpoint step {b.meta['step']} {b.meta['commit'][:10]}{files}"
        self.query_one("#diff", Static).update("\n".join(escape(line) for line in b.lines) or "[dim](no file changes recorded)[/]")

    def on_collapsible_expanded(self, message: Collapsible.Expanded) -> None:
        if not self.block.meta.get("diff_loaded"):
            self.block.meta["diff_loaded"] = True
            self.run_worker(self._load_diff, thread=True, exclusive=True)

    def _load_diff(self) -> None:
        from kcode.tui.diffs import step_diff

        text = step_diff(self.block.meta["repo"], self.block.meta["previous"], self.block.meta["commit"])
        self.app.call_from_thread(self._show_diff, text)

    def _show_diff(self, text: str) -> None:
        from kcode.tui.diffs import render_unified

        self.query_one("#diff", Static).update(render_unified(text, limit=200))


class AgentView(BlockView):
    """A sub-agent's group: its task, steps, tool calls and its latest lines (collapsed)."""

    def compose(self) -> ComposeResult:
        yield Collapsible(Static(id="lines"), title="agent", collapsed=True, id="fold")

    def draw(self) -> None:
        b = self.block
        self.styles.margin = (0, 0, 0, 2 * (b.meta.get("depth", 1) - 1))
        mark = "[yellow]⑂[/]" if b.status == "running" else ("[green]⑂[/]" if b.status == "finished" else "[red]⑂[/]")
        self.query_one("#fold", Collapsible).title = f"{mark} {escape(b.title)} — step {b.meta['steps']}, {b.meta['tools']} tools, {escape(b.status)}"
        self.query_one("#lines", Static).update("\n".join(escape(line) for line in b.lines) or "[dim]…[/]")


_VIEWS: dict[str, type[BlockView]] = {"assistant": AssistantView, "tool": ToolCard, "checkpoint": CheckpointView, "agent": AgentView}


def view_for(block: Block) -> BlockView:
    return _VIEWS.get(block.kind, TextView)(block)
