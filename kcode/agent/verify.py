"""Checking a ``finish`` before it ends the run.

A small model often calls ``finish`` having changed nothing, or right after a failing test
run. Such a finish is sent back with a note instead of ending the run:

- **no changes** on a task that asks for one: sent back once (reproduce the problem, find the
  code, change it, or say why nothing needs to change); the next finish is accepted and the
  summary says "no changes";
- **the last test run failed** (the model's own ``run_tests`` or kcode's): sent back up to
  ``FAILING_BLOCKS`` times, then accepted (the failures may be unrelated to the task).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kcode.resources import read_prompt

__all__ = ["FinishReview", "asks_for_change", "FAILING_BLOCKS", "NO_CHANGES_NOTE"]

FAILING_BLOCKS = 2  # times a finish with failing tests is sent back before it is accepted
NO_CHANGES_NOTE = "(no changes)"

# A task that only asks a question ("why does X fail?", "explain the parser") needs no change.
_QUESTION_START = re.compile(
    r"^\s*(what|why|how|where|which|who|when|is|are|does|do|can|could|should i|explain|describe|"
    r"summari[sz]e|review|tell me|show me|list|walk me through|analy[sz]e)\b",
    re.IGNORECASE,
)
_CHANGE_WORDS = re.compile(
    r"\b(fix|add|implement|change|update|remove|delete|rename|refactor|make|support|write|"
    r"create|modify|replace|handle|correct|improve|bump|port|migrate|convert|allow|ensure|edit|"
    r"patch|resolve|optimi[sz]e|speed up|clean up|introduce|drop|move|extract)\b",
    re.IGNORECASE,
)
_QUESTION_CHARS = 400  # a bug report or a feature request is longer; a question to answer is short


def asks_for_change(task: str) -> bool:
    """Whether ``task`` asks for a change to the repository: anything but a short question
    ("why does X fail?", "explain the parser") with no verb asking for a change."""
    text = task.strip()
    if not text:
        return False
    question = len(text) <= _QUESTION_CHARS and _QUESTION_START.match(text) and not _CHANGE_WORDS.search(text)
    return not question


@dataclass
class FinishReview:
    """What has been sent back so far (saved with the agent state, so resume keeps it)."""

    empty_sent_back: bool = False
    failing_sent_back: int = 0

    @classmethod
    def from_state(cls, state: dict) -> FinishReview:
        saved = state.get("finish_review") or {}
        return cls(bool(saved.get("empty_sent_back")), int(saved.get("failing_sent_back", state.get("finish_blocks", 0))))

    def save(self, state: dict) -> None:
        state["finish_review"] = {"empty_sent_back": self.empty_sent_back, "failing_sent_back": self.failing_sent_back}

    def failing(self, failing_tests: list[str]) -> str | None:
        """The note for a finish after a failing test run, or None to accept it."""
        if self.failing_sent_back >= FAILING_BLOCKS:
            return None
        self.failing_sent_back += 1
        shown = ", ".join(failing_tests[:5]) + (" …" if len(failing_tests) > 5 else "")
        return read_prompt("loop/finish_failing.md").strip().replace("{failing}", shown or "see the last test output")

    def empty(self, task: str) -> str | None:
        """The note for a finish that changed nothing, or None to accept it."""
        if self.empty_sent_back or not asks_for_change(task):
            return None
        self.empty_sent_back = True
        return read_prompt("loop/finish_empty.md").strip()
