"""Loop and stuck guards: notice when the model repeats itself or stops making progress.

- the same tool call (name + canonical arguments) again and again: a warning at streaks of
  3, 5 and 8, a forced change of approach (a system note plus a compaction) at 12;
- an alternation (A B A B A B, or A B C A B C) over 6 steps: a warning;
- 3 malformed tool calls in a row: the format instructions are sent again;
- a call made again with no progress since it was first made (nothing changed, no new test
  result; in a row or not, A B A B): its tools are left out of the next ``WITHHOLD_STEPS``
  steps' grammar, for a local model whose tool calls are constrained
  (:meth:`LoopGuard.repeated_tools`; two steps for the first repeat, so that an A B A B loop
  loses both, and two more for each further one, up to ``WITHHOLD_MAX_STEPS``, so that a
  longer cycle, A B C A B C, loses all its tools at once too); a small model otherwise repeats
  it until the streak's notes stop the run;
- no progress (no file changed, no new test result) for N steps: a nudge, and at 2N a stop.

The notes' texts are in ``prompts/loop/`` (:mod:`kcode.agent.notes`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from kcode.agent.notes import loop_note

__all__ = ["LoopGuard", "GuardVerdict", "canonical_call", "REPEAT_WARN_AT", "REPEAT_FORCE_AT"]

REPEAT_WARN_AT = (3, 5, 8)
REPEAT_FORCE_AT = 12
ALTERNATION_WINDOW = 6
MALFORMED_LIMIT = 3
SINCE_PROGRESS_KEPT = 40  # calls remembered for repeated_tools
WITHHOLD_STEPS = 2  # steps a repeated call's tools stay out of the grammar, per repeat
WITHHOLD_MAX_STEPS = 8


def canonical_call(name: str, arguments: dict[str, Any]) -> str:
    return name + ":" + json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class GuardVerdict:
    notes: list[str] = field(default_factory=list)  # observations for the model
    force_change: bool = False  # a system note plus a compaction
    resend_format: bool = False
    stop: str | None = None  # stop the run with this reason


@dataclass
class LoopGuard:
    stuck_steps: int = 30  # no progress for this many steps → a nudge; twice as many → stop
    _last_call: str | None = None
    _last_names: tuple[str, ...] = ()  # the tools of the last step's calls
    _since_progress: list[str] = field(default_factory=list)  # calls made since the last progress
    _withheld: dict[str, int] = field(default_factory=dict)  # tool → steps it stays withheld
    _streak: int = 0
    _recent: deque[str] = field(default_factory=lambda: deque(maxlen=ALTERNATION_WINDOW))
    _malformed: int = 0
    _idle: int = 0
    _alternation_warned_at: int = -ALTERNATION_WINDOW

    def observe(self, step: int, calls: list[str], malformed: int, progressed: bool) -> GuardVerdict:
        """Record one step: its canonical calls, how many calls were malformed, and whether
        it changed files or produced a new test result."""
        verdict = GuardVerdict()
        self._check_malformed(malformed, verdict)
        if calls:
            self._last_names = tuple(call.split(":", 1)[0] for call in calls)
            signature = "|".join(calls)
            self._withheld = {name: left - 1 for name, left in self._withheld.items() if left > 1}
            if (made := self._since_progress.count(signature)):
                steps = min(WITHHOLD_MAX_STEPS, WITHHOLD_STEPS * made)
                self._withheld.update({name: max(steps, self._withheld.get(name, 0)) for name in self._last_names})
            self._since_progress = (self._since_progress + [signature])[-SINCE_PROGRESS_KEPT:]
            self._check_repeats(signature, verdict)
            self._recent.append(signature)
            self._check_alternation(step, verdict)
        self._check_progress(progressed, verdict)
        return verdict

    def repeated_tools(self) -> set[str]:
        """The tools of calls made again with no progress since they were first made, for
        ``WITHHOLD_STEPS`` steps after the first repeat and as many more after each further one."""
        return set(self._withheld)

    def _check_malformed(self, malformed: int, verdict: GuardVerdict) -> None:
        self._malformed = self._malformed + 1 if malformed else 0
        if self._malformed >= MALFORMED_LIMIT:
            verdict.resend_format = True
            self._malformed = 0

    def _check_repeats(self, signature: str, verdict: GuardVerdict) -> None:
        self._streak = self._streak + 1 if signature == self._last_call else 1
        self._last_call = signature
        if self._streak in REPEAT_WARN_AT:
            verdict.notes.append(loop_note("repeated_call", count=self._streak))
        elif self._streak >= REPEAT_FORCE_AT:
            verdict.force_change = True
            verdict.notes.append(loop_note("loop_stopped", count=self._streak))
            self._streak = 0
            self._last_call = None

    def _check_alternation(self, step: int, verdict: GuardVerdict) -> None:
        recent = list(self._recent)
        if len(recent) < ALTERNATION_WINDOW or step - self._alternation_warned_at < ALTERNATION_WINDOW:
            return
        for period in (2, 3):
            if len(set(recent[:period])) == period and all(recent[i] == recent[i % period] for i in range(len(recent))):
                self._alternation_warned_at = step
                verdict.notes.append(loop_note("alternating_calls", period=period, window=ALTERNATION_WINDOW))
                return

    def _check_progress(self, progressed: bool, verdict: GuardVerdict) -> None:
        if progressed:
            self._idle = 0
            self._since_progress, self._withheld = [], {}
            return
        self._idle += 1
        if self._idle == self.stuck_steps:
            verdict.notes.append(loop_note("no_progress", steps=self._idle))
        elif self._idle >= 2 * self.stuck_steps:
            verdict.stop = f"no progress for {self._idle} steps (no file changed, no new test result)"

    def state(self) -> dict[str, Any]:
        return {"streak": self._streak, "last_call": self._last_call, "last_names": list(self._last_names),
                "since_progress": self._since_progress, "withheld": self._withheld, "recent": list(self._recent), "malformed": self._malformed, "idle": self._idle}

    def restore(self, state: dict[str, Any]) -> None:
        self._streak = int(state.get("streak", 0))
        self._last_call = state.get("last_call")
        self._last_names = tuple(state.get("last_names", ()))
        self._since_progress = list(state.get("since_progress", []))
        self._withheld = {str(k): int(v) for k, v in (state.get("withheld") or {}).items()}
        self._recent = deque(state.get("recent", []), maxlen=ALTERNATION_WINDOW)
        self._malformed = int(state.get("malformed", 0))
        self._idle = int(state.get("idle", 0))
