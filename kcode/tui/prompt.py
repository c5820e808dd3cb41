"""The input: a multi-line editor with history and ``@path`` completion.

Enter sends; ctrl+j (or shift+enter where the terminal tells it apart) starts a new line.
Up on the first line and down on the last walk the history (kept in the user's data folder).
Tab after ``@some/pa`` completes the path from the repository's files (``git ls-files``): one
match is filled in, several fill their common prefix and are listed under the editor.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from textual import events
from textual.message import Message
from textual.widgets import TextArea

__all__ = ["PromptInput", "History", "complete_path", "repository_files"]

HISTORY_MAX = 500


class History:
    """Sent messages, oldest first, optionally kept in a JSONL file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.items: list[str] = []
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-HISTORY_MAX:]:
                try:
                    self.items.append(str(json.loads(line)))
                except json.JSONDecodeError:
                    continue
        self.position = len(self.items)

    def add(self, text: str) -> None:
        if not text.strip() or (self.items and self.items[-1] == text):
            self.position = len(self.items)
            return
        self.items.append(text)
        del self.items[:-HISTORY_MAX]
        self.position = len(self.items)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(text) + "\n")
            except OSError:
                pass  # history is a convenience: a read-only home does not stop the TUI

    def previous(self) -> str | None:
        if self.position == 0:
            return None
        self.position -= 1
        return self.items[self.position]

    def next(self) -> str | None:
        if self.position >= len(self.items):
            return None
        self.position += 1
        return self.items[self.position] if self.position < len(self.items) else ""


def repository_files(root: Path | None) -> list[str]:
    if root is None:
        return []
    proc = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    return sorted(set(proc.stdout.splitlines()))


def complete_path(prefix: str, files: list[str]) -> tuple[str, list[str]]:
    """(the completion of ``prefix``, the candidates): files and folders that start with it;
    the completion is their longest common prefix (a folder ends in ``/``)."""
    names: set[str] = set()
    for name in files:
        if name.startswith(prefix):
            slash = name.find("/", len(prefix))
            names.add(name if slash == -1 else name[: slash + 1])
    candidates = sorted(names)
    if not candidates:
        return prefix, []
    return os.path.commonprefix(candidates), candidates


class PromptInput(TextArea):
    """The message editor. Posts :class:`PromptInput.Submitted` on enter."""

    DEFAULT_CSS = "PromptInput { height: auto; min-height: 3; max-height: 12; border: round $accent; }"

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Completions(Message):
        def __init__(self, candidates: list[str]) -> None:
            super().__init__()
            self.candidates = candidates

    def __init__(self, history: History | None = None, root: Path | None = None, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="indent", **kwargs)
        self.sent = history or History()
        self.root = root
        self._files: list[str] | None = None

    def files(self) -> list[str]:
        if self._files is None:
            self._files = repository_files(self.root)
        return self._files

    async def _on_key(self, event: events.Key) -> None:
        key = event.key
        if key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text
            if text.strip():
                self.sent.add(text)
                self.load_text("")
                self.post_message(self.Submitted(text))
            return
        if key in ("ctrl+j", "shift+enter"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        if key == "tab":
            event.stop()
            event.prevent_default()
            self.complete()
            return
        if key == "escape":
            event.prevent_default()  # not TextArea's (it moves the focus); the app's: interrupt / stop
            return
        if key == "up" and self.cursor_location[0] == 0:
            self._recall(self.sent.previous(), event)
            return
        if key == "down" and self.cursor_location[0] == self.document.line_count - 1:
            self._recall(self.sent.next(), event)
            return
        # anything else: TextArea's own handler runs next (Textual calls each class's _on_key)

    def _recall(self, text: str | None, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        if text is not None:
            self.load_text(text)
            self.move_cursor(self.document.end)

    def complete(self) -> list[str]:
        """Complete the ``@path`` before the cursor; returns the candidates (also posted)."""
        row, column = self.cursor_location
        line = self.document.get_line(row)[:column]
        at = line.rfind("@")
        if at == -1 or any(ch.isspace() for ch in line[at + 1:]) or (at > 0 and not line[at - 1].isspace()):
            self.post_message(self.Completions([]))
            return []
        prefix = line[at + 1:]
        completion, candidates = complete_path(prefix, self.files())
        if len(completion) > len(prefix):
            self.insert(completion[len(prefix):])
        if len(candidates) == 1 and not candidates[0].endswith("/"):
            self.insert(" ")
        self.post_message(self.Completions(candidates if len(candidates) > 1 else []))
        return candidates
