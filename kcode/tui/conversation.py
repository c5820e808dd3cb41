"""The conversation view: the transcript's turns as widgets, only a window of them mounted.

The newest ``WINDOW`` turns (at most ``MAX_BLOCKS`` blocks) are mounted while the view
follows the end; older turns are
folded (their blocks stay as data in the :class:`~kcode.tui.state.Transcript`, their widgets
are removed) behind a marker at the top. Scrolling to the top (or page-up there) mounts the
previous ``BATCH`` turns again; going back to the end folds them away. However the user
scrolls, at most ``CAP`` turns are mounted, so memory stays bounded in a session of any
length.
"""

from __future__ import annotations

from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from kcode.tui.blocks import Laid, Synced, update_in_place, view_for
from kcode.tui.state import Block, Transcript

__all__ = ["ConversationView", "TurnView", "WINDOW", "BATCH", "CAP"]

WINDOW, BATCH, CAP = 12, 10, 60
MAX_BLOCKS = 60  # blocks mounted at most while following (turns with many tool calls fold sooner)


class TurnView(Laid, Vertical):
    DEFAULT_CSS = "TurnView { height: auto; }"

    def __init__(self, index: int, *children) -> None:
        super().__init__(*children, classes="turn")
        self.index = index


class ConversationView(Laid, VerticalScroll):
    DEFAULT_CSS = """
    ConversationView { height: 1fr; padding: 0 1; }
    ConversationView #folded { color: $text-muted; text-style: italic; margin-bottom: 1; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, transcript: Transcript, **kwargs) -> None:
        super().__init__(**kwargs)
        self.transcript = transcript
        self.turn_views: dict[int, TurnView] = {}
        self.views: dict[int, Synced] = {}  # id(block) -> its widget, for mounted turns
        self.lo = 0  # the first mounted turn (those before it are folded)
        self.cleared = 0  # /clear: turns before this are not shown at all
        self.marker = Static("", id="folded")  # held, not queried: a sync may come before compose

    def compose(self):
        yield self.marker

    def on_mount(self) -> None:
        self.marker.display = False
        self.anchor()  # kept at the end as blocks come, in the same layout (no scroll frame after it)
        self.sync()  # what came in while this view was being mounted (a /resume's past)

    # -- following the end -------------------------------------------------------------
    @property
    def following(self) -> bool:
        if self.is_anchored and not getattr(self, "_anchor_released", False):
            return True  # kept at the end by the layout (before one, its scroll may read below 0)
        return self.scroll_y >= self.max_scroll_y - 1

    def sync(self) -> None:
        """Bring the widgets up to the transcript: new blocks mounted (in mounted turns, or a
        new turn), changed ones redrawn, and only the window's turns kept mounted. Blocks of
        folded turns are not built at all (a catch-up of 20,000 events mounts one window).
        Before the view is mounted (a /resume's new view) or while the app shuts down, the
        changes wait in the transcript."""
        if not self.is_mounted or not self.marker.is_mounted or not self.app.is_running:
            return
        changed, _ = self.transcript.take_changes()
        if not changed:
            return
        follow = self.following
        with self.app.batch_update():
            if follow:
                self._fold_below(max(self.lo, self.cleared, self._window_start()))
            new: dict[int, list[Block]] = {}
            for block in changed:
                view = self.views.get(id(block))
                if view is not None:
                    if view.is_mounted:
                        view.sync()
                elif block.turn >= self.lo and block.turn >= self.cleared:
                    new.setdefault(block.turn, []).append(block)
            for index in sorted(new):
                self._mount_blocks(index, new[index])
            mounted = sorted(self.turn_views)
            while len(mounted) > CAP or (follow and len(mounted) > 1 and len(self.views) > MAX_BLOCKS):
                self._unmount_turn(mounted.pop(0))
            if mounted:
                self.lo = mounted[0]
            self._marker()

    def _window_start(self) -> int:
        """The first turn of the window while following: the last ``WINDOW`` turns, fewer
        when they hold more than ``MAX_BLOCKS`` blocks (the last turn always)."""
        turns = self.transcript.turns
        lo, count = max(0, len(turns) - WINDOW), 0
        for index in range(len(turns) - 1, lo - 1, -1):
            count += len(turns[index].blocks)
            if count > MAX_BLOCKS and index < len(turns) - 1:
                return index + 1
        return lo

    def _fold_below(self, lo: int) -> None:
        for index in [i for i in self.turn_views if i < lo]:
            self._unmount_turn(index)
        self.lo = max(self.lo, lo)

    def _mount_blocks(self, index: int, blocks: list[Block]) -> None:
        """Mount the widgets of new blocks of turn ``index`` (and the turn's, if it has none
        yet). A turn whose widget is still being mounted gets them at the next sync."""
        turn = self.turn_views.get(index)
        if turn is not None and not turn.is_mounted:
            for block in blocks:
                self.transcript.changed[id(block)] = block
            return
        views = []
        for block in blocks:
            view = view_for(block)
            self.views[id(block)] = view
            views.append(view)
        if turn is not None:
            turn.mount_all(views)
            return
        turn = self.turn_views[index] = TurnView(index, *views)
        later = [i for i in self.turn_views if i > index]
        if later:
            self.mount(turn, before=self.turn_views[min(later)])
        else:
            self.mount(turn)

    def _unmount_turn(self, index: int) -> None:
        view = self.turn_views.pop(index, None)
        if view is None:
            return
        for block in self.transcript.turns[index].blocks:
            self.views.pop(id(block), None)
        view.remove()

    def _marker(self) -> None:
        folded = self.lo - self.cleared
        marker = self.marker
        if marker.display != (folded > 0):
            marker.display = folded > 0
        if folded > 0 and folded != getattr(marker, "folded", None):
            marker.folded = folded
            update_in_place(marker, f"▲ {folded} earlier turn{'s' if folded != 1 else ''} folded — scroll up (or page up) to show them")

    # -- scrolling back ------------------------------------------------------------------
    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new <= 0 and self.lo > self.cleared and old > 0:
            self.call_later(self.unfold)

    def action_page_up(self) -> None:
        if self.scroll_y <= 0 and self.lo > self.cleared:
            self.unfold()
        else:
            super().action_page_up()

    def unfold(self, count: int = BATCH) -> int:
        """Mount the ``count`` turns before the first mounted one; returns how many."""
        start = max(self.cleared, self.lo - count)
        if start >= self.lo:
            return 0
        anchor = self.turn_views.get(self.lo)
        with self.app.batch_update():
            turns = []
            for index in range(start, self.lo):
                views = []
                for block in self.transcript.turns[index].blocks:
                    views.append(view_for(block))
                    self.views[id(block)] = views[-1]
                turns.append(TurnView(index, *views))
            first = self.turn_views.get(self.lo)
            if first is not None:
                self.mount_all(turns, before=first)
            else:
                self.mount_all(turns, after=self.marker)
            for turn in turns:
                self.turn_views[turn.index] = turn
            added = self.lo - start
            self.lo = start
            mounted = sorted(self.turn_views)
            while len(mounted) > CAP:  # too many: fold the newest away (the user is reading back)
                self._unmount_turn(mounted.pop())
            self._marker()
        if anchor is not None:
            self.call_after_refresh(self.scroll_to_widget, anchor, animate=False, top=True)
        return added

    def refold(self) -> None:
        """Back to the end: only the window mounted."""
        with self.app.batch_update():
            self._fold_below(max(self.cleared, len(self.transcript.turns) - WINDOW))
            self._marker()
        self.anchor()

    def clear(self) -> None:
        """/clear: nothing of the conversation so far is shown (the transcript keeps it)."""
        with self.app.batch_update():
            for index in list(self.turn_views):
                self._unmount_turn(index)
        self.cleared = self.lo = len(self.transcript.turns)
        self.transcript.turns.append(type(self.transcript.turns[0])(self.cleared, self.transcript.status.step))
        self._marker()

    def latest_tool(self) -> Block | None:
        for turn in reversed(self.transcript.turns):
            for block in reversed(turn.blocks):
                if block.kind == "tool":
                    return block
        return None

    def mounted_turns(self) -> list[int]:
        return sorted(self.turn_views)
