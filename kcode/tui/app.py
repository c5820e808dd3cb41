"""The interactive TUI: a pure consumer of a run's events, driving it through its handle.

:func:`main` takes a :class:`kcode.session.control.RunHandle` (a run in this process, or one
attached through its session directory) and shows it: the conversation
(:mod:`kcode.tui.conversation`), the status line and the input. Events arrive on the
handle's thread and wait in a queue; every ~100 ms the app folds what came into the
:class:`~kcode.tui.state.Transcript` and redraws the blocks that changed, so a stream of
text deltas becomes one Markdown update per tick and the keys never wait for the stream.

Keys: enter sends a message (while a step runs it is queued and delivered at the next step:
steering), esc interrupts the step, esc twice stops the run; slash commands in
:mod:`kcode.tui.commands`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from kcode.tui.commands import run_command
from kcode.tui.conversation import ConversationView
from kcode.tui.prompt import History, PromptInput
from kcode.tui.state import Block, Transcript
from kcode.tui.status import StatusLine

__all__ = ["KcodeApp", "main", "TICK", "DOUBLE_ESC"]

TICK = 0.1  # seconds between folds of the event queue into the view
DOUBLE_ESC = 0.8  # a second esc within this stops the run
DRAIN_BUDGET = 0.05  # seconds of event folding per tick at most (a catch-up takes several)
CATCH_UP_POLL = 0.01  # while an attacher catches up with the log: how soon to look again


class KcodeApp(App[int]):
    """The kcode TUI on one run handle (see the module's docstring)."""

    TITLE = "kcode"
    CSS = """
    Screen { layout: vertical; }
    #completions { height: auto; max-height: 4; color: $text-muted; padding: 0 2; }
    """
    BINDINGS = [
        Binding("escape", "escape", "Interrupt", show=False),
        Binding("ctrl+o", "latest_output", "Tool output", show=False),
        Binding("ctrl+r", "reasoning", "Reasoning", show=False),
        Binding("ctrl+q", "quit_tui", "Quit", show=False, priority=True),
    ]

    def __init__(self, handle: Any, *, task: str | None = None, repo: Path | None = None, open_session: Callable[[str | None], Any] | None = None,
                 history: History | None = None, drain_budget: float = DRAIN_BUDGET, freeze_gc: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.handle = handle
        self.first_message = task
        self.repo = repo or getattr(handle, "repo", None)
        self.open_session = open_session
        self.history = history if history is not None else History()
        self.transcript = Transcript()
        self.inbox: collections.deque[Any] = collections.deque()
        self.drain_budget = drain_budget
        self._last_esc = 0.0
        self._approval_shown: str | None = None
        self._answered: set[str] = set()
        self._feed_id = 0
        self.show_reasoning = False  # ctrl+r: every reasoning block open
        self.frames = 0  # drains that changed the view (tests and the perf harness read it)
        self._catching_up = False  # a drain of an attacher's catch-up is scheduled
        self.freeze_gc = freeze_gc

    # -- layout --------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        self.conversation = ConversationView(self.transcript, id="conversation")
        yield self.conversation
        yield Static("", id="completions")
        yield PromptInput(history=self.history, root=self.repo, id="input")
        self.status_line = StatusLine(self.transcript.status, id="status")
        yield self.status_line

    def on_mount(self) -> None:
        self.query_one("#completions", Static).display = False
        self.query_one("#input", PromptInput).focus()
        self._subscribe(self.handle)
        self.set_interval(TICK, self.drain)
        if self.freeze_gc:
            self.call_after_refresh(_freeze_startup_objects)
        if self.first_message:
            self._send(lambda: self.handle.steer(self.first_message))  # a new session's first message starts it

    def _subscribe(self, handle: Any) -> None:
        from kcode.tui.handles import past_events

        self._feed_id += 1
        feed, inbox = self._feed_id, self.inbox
        inbox.extend(past_events(handle))  # a session to resume: what it did so far

        def receive(event: Any) -> None:  # the handle's thread: only queue it
            if feed == self._feed_id:
                inbox.append(event)

        handle.subscribe(receive)

    # -- events in -----------------------------------------------------------------------
    def drain(self) -> int:
        """Fold the queued events into the transcript and redraw; returns how many (none
        once the app is shutting down: its widgets are being removed)."""
        if not self.is_running:
            return 0
        inbox, apply = self.inbox, self.transcript.apply
        deadline = time.perf_counter() + self.drain_budget
        count = 0
        while inbox:
            apply(inbox.popleft())
            count += 1
            if count % 256 == 0 and time.perf_counter() > deadline:
                break
        if getattr(self.handle, "catching_up", False):  # an attacher reading the log: draw its end, once
            if not self._catching_up:
                self._catching_up = True
                if inbox:
                    self.call_later(self._catch_up)
                else:
                    self.set_timer(CATCH_UP_POLL, self._catch_up)
            return count
        if count or self.transcript.changed:
            self.conversation.sync()
            self.status_line.draw()
            self.frames += 1
        if inbox:  # a catch-up: go on at once (keys queued meanwhile still come first)
            self.call_later(self.drain)
        self._ask_approval()
        return count

    def _catch_up(self) -> None:
        self._catching_up = False
        self.drain()

    def _ask_approval(self) -> None:
        from kcode.tui.screens import ApprovalScreen

        pending = {rid: block for rid, block in self.transcript.pending_approvals.items() if rid not in self._answered}
        if self._approval_shown is not None:
            if self._approval_shown not in pending and isinstance(self.screen, ApprovalScreen):
                self._approval_shown = None
                self.pop_screen()  # answered elsewhere (another attacher)
            return
        if not pending:
            return
        request_id, block = next(iter(pending.items()))
        self._approval_shown = request_id

        def answered(result: tuple[str, str] | None) -> None:
            self._approval_shown = None
            if result is not None:
                self._answered.add(request_id)  # until its approval.resolved comes back
                self._send(lambda: self.handle.answer(request_id, result[0], result[1]))

        self.push_screen(ApprovalScreen(request_id, block.text, block.title, block.meta.get("reason", "")), answered)

    # -- things the user does ------------------------------------------------------------
    def say(self, text: str, *, error: bool = False, markup: bool = False) -> None:
        """A line of the TUI's own in the conversation (not in the session's log)."""
        self.transcript.add(Block("markup" if markup else ("error" if error else "notice"), title="kcode", text=text))
        self.conversation.sync()

    def _send(self, call: Callable[[], Any]) -> bool:
        from kcode.errors import KcodeError

        try:
            call()
        except KcodeError as error:
            self.say(str(error), error=True)
            return False
        return True

    def run_active(self) -> bool:
        return bool(getattr(self.handle, "running", False)) and self.transcript.status.state != "finished"

    def on_prompt_input_submitted(self, message: PromptInput.Submitted) -> None:
        self.query_one("#completions", Static).display = False
        text = message.text.strip()
        if text.startswith("/") and not text.startswith("//"):
            run_command(self, text)
            return
        if text.startswith("//"):
            text = text[1:]
        if getattr(self.handle, "read_only", False):
            self.say("attached read-only: messages are not sent", error=True)
            return
        self._send(lambda: self.handle.steer(text))

    def on_prompt_input_completions(self, message: PromptInput.Completions) -> None:
        box = self.query_one("#completions", Static)
        box.display = bool(message.candidates)
        shown = message.candidates[:24]
        box.update("  ".join(shown) + (f"  … {len(message.candidates) - 24} more" if len(message.candidates) > 24 else ""))

    def action_escape(self) -> None:
        box = self.query_one("#completions", Static)
        if box.display:
            box.display = False
            return
        now = time.monotonic()
        if now - self._last_esc < DOUBLE_ESC:
            self._last_esc = 0.0
            if self._send(self.handle.stop):
                self.say("stopping the run…")
            return
        self._last_esc = now
        if self.run_active():
            self._send(self.handle.interrupt_step)

    def action_reasoning(self) -> None:
        self.show_reasoning = not self.show_reasoning
        for view in self.conversation.views.values():
            if view.block.kind == "assistant":
                view.draw()

    def action_latest_output(self) -> None:
        from kcode.tui.screens import TextScreen

        block = self.conversation.latest_tool()
        if block is None:
            self.notify("no tool output yet")
            return
        self.push_screen(TextScreen(block.title, block.output or "(no output yet)"))

    def action_quit_tui(self) -> None:
        """Leave; closing the handle (on unmount) stops a run of this process (it stays
        resumable) and lets an attached one go on."""
        self.exit(self.exit_code_of_run())

    def exit_code_of_run(self) -> int:
        for turn in reversed(self.transcript.turns):
            for block in reversed(turn.blocks):
                if block.kind == "finished":
                    return int(block.meta.get("exit_code", 0))
        return 0

    def switch_handle(self, handle: Any) -> None:
        """Show another run (/resume): a fresh transcript on the new handle's events."""
        old, self.handle = self.handle, handle
        self._send(old.close)
        self.inbox.clear()
        self.transcript = Transcript()
        conversation = ConversationView(self.transcript, id="conversation-next")
        self.conversation.remove()
        self.mount(conversation, before=self.query_one("#completions"))
        self.conversation = conversation
        self.status_line.status = self.transcript.status
        self._subscribe(handle)

    def on_unmount(self) -> None:
        from kcode.errors import KcodeError

        try:
            self.handle.close()
        except KcodeError:
            pass


def _freeze_startup_objects() -> None:
    """Once the first frame is out: what Textual, Rich and kcode built at startup (modules,
    classes, styles: most of the heap) is moved out of the cyclic collector's reach. Its
    oldest generation then scans only what the session made since, and its pauses, which
    land between a key and its frame, stay short (they were up to ~100 ms). For the
    process's own TUI only (:func:`main`): in a process that goes on to other things, frozen
    cycles that die later would never be collected."""
    import gc

    gc.collect()
    gc.freeze()


def _terminal_size_from_the_terminal() -> None:
    """Textual takes COLUMNS and LINES before the terminal's own size and then ignores
    resizes. A parent process may have exported them without meaning it (GNU readline does,
    in any Python that loads it: pytest, a script that starts kcode), which pinned the TUI to
    80x24 in a wider terminal; in a real terminal, its size wins."""
    import os
    import sys

    stream = sys.__stdout__
    if stream is not None and stream.isatty():
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


def main(handle: Any, *, task: str | None = None, repo: Path | None = None, open_session: Callable[[str | None], Any] | None = None,
         history_path: Path | None = None) -> int:  # fmt: skip
    """Run the TUI on ``handle`` until the user quits; the exit code is the run's (0 while it
    had not finished). ``task``: sent as the first message (it starts a new session's run).
    A handle on a session that has run before shows its log first. ``open_session(id or
    None)`` returns a handle on another session, for /resume and /sessions (default:
    :func:`kcode.tui.handles.session_opener`); ``history_path``: where the input history is
    kept (default: the user's data folder)."""
    from kcode.paths import data_dir
    from kcode.tui.handles import session_opener

    history = History(history_path if history_path is not None else data_dir() / "tui-history.jsonl")
    _terminal_size_from_the_terminal()
    app = KcodeApp(handle, task=task, repo=repo, open_session=open_session or session_opener(handle), history=history, freeze_gc=True)
    code = app.run()
    return int(code or 0)
