"""Modal screens: the full text of a tool's output (or a diff), the approval question, and
the session picker."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Log, OptionList, Static
from textual.widgets.option_list import Option

from kcode.tui.diffs import render_split, render_unified

__all__ = ["TextScreen", "DiffScreen", "ApprovalScreen", "PickerScreen"]


class TextScreen(ModalScreen[None]):
    """A text in a line-based view that renders only what is on screen (esc or q closes)."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    TextScreen { align: center middle; }
    TextScreen > Vertical { width: 100%; height: 100%; border: round $accent; }
    TextScreen Log { height: 1fr; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"{self.title_text} — esc closes"
            yield Log(id="full", auto_scroll=False)

    def on_mount(self) -> None:
        log = self.query_one("#full", Log)
        log.write_lines(self.text.splitlines())
        log.scroll_home(animate=False)
        log.focus()


class DiffScreen(ModalScreen[None]):
    """A diff, unified or side by side (s switches), scrollable; esc or q closes."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close"), Binding("s", "split", "Split/unified")]
    DEFAULT_CSS = """
    DiffScreen > Vertical { width: 100%; height: 100%; border: round $accent; overflow-y: auto; }
    DiffScreen Static { width: 100%; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text, self.split = title, text, False

    def compose(self) -> ComposeResult:
        with Vertical(id="box") as box:
            box.border_title = f"{self.title_text} — s: split/unified, esc closes"
            yield Static(id="diff")

    def on_mount(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.app.size.width - 4
        self.query_one("#diff", Static).update(render_split(self.text, width) if self.split else render_unified(self.text, limit=5000))

    def action_split(self) -> None:
        self.split = not self.split
        self._draw()


class ApprovalScreen(ModalScreen[tuple[str, str]]):
    """The run asks to do more than its sandbox allows: once, always (this session), or deny
    with a reason. Dismisses with (decision, reason)."""

    BINDINGS = [Binding("o", "once", "Once"), Binding("a", "always", "Always"), Binding("d", "deny", "Deny")]
    DEFAULT_CSS = """
    ApprovalScreen { align: center middle; }
    ApprovalScreen > Vertical { width: 80%; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    ApprovalScreen Input { display: none; }
    ApprovalScreen.denying Input { display: block; }
    """

    def __init__(self, request_id: str, command: str, needs: str, reason: str) -> None:
        super().__init__()
        self.request_id, self.command, self.needs, self.reason = request_id, command, needs, reason

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "approval needed"
            what = {"network": "network access", "write-outside": "writes outside the repository"}.get(self.needs, self.needs)
            yield Static(f"The run asks for [bold]{escape(what)}[/]:\n\n  [bold]{escape(self.command)}[/]\n")
            if self.reason:
                yield Static(f"[dim]{escape(self.reason)}[/]\n")
            yield Static("[bold]o[/] allow once   [bold]a[/] allow always (this session)   [bold]d[/] deny with a reason", id="keys")
            # disabled (so not focusable) until d: otherwise the screen's auto-focus puts the
            # hidden box under the keys, and the d that picks "deny" is typed into it too
            yield Input(placeholder="why not? (enter sends the denial)", id="reason", disabled=True)

    def action_once(self) -> None:
        if not self.has_class("denying"):
            self.dismiss(("once", ""))

    def action_always(self) -> None:
        if not self.has_class("denying"):
            self.dismiss(("always", ""))

    def action_deny(self) -> None:
        if not self.has_class("denying"):
            self.add_class("denying")
            box = self.query_one("#reason", Input)
            box.disabled = False
            box.focus()  # the d itself is not typed: the box was not focused when it came

    def on_input_submitted(self, message: Input.Submitted) -> None:
        self.dismiss(("deny", message.value.strip()))


class PickerScreen(ModalScreen[str | None]):
    """Choose one of a list (sessions): enter picks, esc cancels. Dismisses with the id."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    PickerScreen { align: center middle; }
    PickerScreen > Vertical { width: 90%; height: 70%; border: round $accent; background: $surface; }
    PickerScreen OptionList { height: 1fr; }
    """

    def __init__(self, title: str, options: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text, self.options = title, options

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"{self.title_text} — enter picks, esc cancels"
            yield OptionList(*[Option(escape(label), id=key) for key, label in self.options], id="options")

    def on_mount(self) -> None:
        self.query_one("#options", OptionList).focus()

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(message.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
