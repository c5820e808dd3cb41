"""Split a stream of decoded text into reasoning and content deltas, holding back markup.

Tool-call markup is never streamed as text: once a Kimi or Hermes opener appears the rest of
the step is withheld (it is parsed at the end). A ``` fence is held only until it is clear
whether it starts a JSON tool call (withheld until it closes, then dropped) or an ordinary
code block (streamed as it comes). A suffix
that could be the start of a marker is held back until the next delta decides it.
"""

from __future__ import annotations

import re

from kcode.llm.toolcall_parse import (
    HERMES_BEGIN,
    KIMI_CALL_BEGIN,
    KIMI_SECTION_BEGIN,
    THINK_BEGIN,
    THINK_END,
    looks_like_call,
)

__all__ = ["OutputSplitter", "TOOL_OPENERS"]

TOOL_OPENERS = (KIMI_SECTION_BEGIN, KIMI_CALL_BEGIN, HERMES_BEGIN)
_FENCE = "```"
_FENCE_TAG = re.compile(r"^[ \t]*(?:json|JSON|tool_call)?[ \t]*\n?")
_FENCE_HEAD = re.compile(r"[ \t]*([A-Za-z0-9_+.-]*)")
_CALL_TAGS = ("json", "tool_call")


def _held_suffix(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if text.endswith(marker[:size]):
                best = size
                break
    return best


def _fence_verdict(text: str, final: bool) -> str:
    """For text starting with a fence: "call" (may be a JSON tool call: buffer it), "code"
    (an ordinary code block: stream it) or "undecided" (need more text)."""
    match = _FENCE_HEAD.match(text, len(_FENCE))
    tag = match.group(1).lower() if match else ""
    after_tag = text[match.end():] if match else ""
    if tag and not any(known.startswith(tag) for known in _CALL_TAGS):
        return "code"
    if not after_tag and not final:
        return "undecided"  # the tag may still grow
    if tag and tag not in _CALL_TAGS:
        return "code"
    body = after_tag.lstrip()
    if not body:
        return "call" if final else "undecided"
    if body[0] not in "{[":
        return "code"
    if looks_like_call(body):
        return "call"
    if len(body) < 48 and not final and "}" not in body:
        return "undecided"
    return "code"


class OutputSplitter:
    """Feed decoded text; get ``("reasoning" | "text", delta)`` pairs back."""

    def __init__(self, *, reasoning_open: bool = False) -> None:
        self._state = "reasoning" if reasoning_open else "start"
        self._pending = ""
        self.tool_opener: str | None = None

    def feed(self, delta: str) -> list[tuple[str, str]]:
        self._pending += delta
        out: list[tuple[str, str]] = []
        while True:
            progressed = self._step(out, final=False)
            if not progressed:
                return [(kind, text) for kind, text in out if text]

    def finish(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while self._step(out, final=True):
            pass
        return [(kind, text) for kind, text in out if text]

    def _step(self, out: list[tuple[str, str]], final: bool) -> bool:
        text = self._pending
        if not text or self._state == "calls":
            self._pending = "" if self._state == "calls" else text
            return False
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(THINK_BEGIN):
                self._pending = stripped[len(THINK_BEGIN):]
                self._state = "reasoning"
                return True
            if not final and (not stripped or THINK_BEGIN.startswith(stripped)):
                return False
            self._state = "content"
            return True
        if self._state == "reasoning":
            end = text.find(THINK_END)
            if end != -1:
                out.append(("reasoning", text[:end]))
                self._pending = text[end + len(THINK_END):]
                self._state = "content"
                return True
            hold = 0 if final else _held_suffix(text, (THINK_END,))
            out.append(("reasoning", text[: len(text) - hold]))
            self._pending = text[len(text) - hold:]
            return False
        if self._state == "fence":
            verdict = _fence_verdict(text, final)
            if verdict == "undecided":
                return False
            if verdict == "code":  # an ordinary code block: stream it as it comes
                out.append(("text", text[: len(_FENCE)]))
                self._pending = text[len(_FENCE):]
                self._state = "code"
                return True
            close = text.find(_FENCE, len(_FENCE))  # a JSON tool call: withheld until closed
            if close == -1 and not final:
                return False
            block = text if close == -1 else text[: close + len(_FENCE)]
            if not looks_like_call(_FENCE_TAG.sub("", block[len(_FENCE):], count=1)):
                out.append(("text", block))
            self._pending = text[len(block):]
            self._state = "content"
            return True
        if self._state == "code":
            close = text.find(_FENCE)
            if close != -1:
                out.append(("text", text[: close + len(_FENCE)]))
                self._pending = text[close + len(_FENCE):]
                self._state = "content"
                return True
            hold = 0 if final else _held_suffix(text, (_FENCE,))
            out.append(("text", text[: len(text) - hold]))
            self._pending = text[len(text) - hold:]
            return False
        # content
        markers = (*TOOL_OPENERS, _FENCE)
        hits = [(text.find(m), m) for m in markers if m in text]
        if hits:
            position, marker = min(hits)
            out.append(("text", text[:position]))
            if marker == _FENCE:
                self._pending = text[position:]
                self._state = "fence"
            else:
                self.tool_opener = marker
                self._pending = ""
                self._state = "calls"
            return True
        hold = 0 if final else _held_suffix(text, markers)
        out.append(("text", text[: len(text) - hold]))
        self._pending = text[len(text) - hold:]
        return False
