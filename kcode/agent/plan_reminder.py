"""The plan reminder: every few steps the live plan (the ``todo`` tool's) is appended to the
step's last tool result.

The reminder is stored with that result, so every request extends the previous one and a
local model's KV cache is reused (an unstored reminder moving from result to result made each
step re-evaluate the last result). A step that calls ``todo`` counts as a reminder: its
result shows the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kcode.agent.notes import loop_note
from kcode.tools.plan import render_todo

__all__ = ["PlanReminder", "PLAN_REMINDER_EVERY"]

PLAN_REMINDER_EVERY = 4  # steps between reminders


@dataclass
class PlanReminder:
    every: int = PLAN_REMINDER_EVERY
    shown_at: int = 0  # the last step that showed the plan (a reminder or a todo call)

    def suffix(self, step: int, calls: list[str], todo: list[dict[str, str]]) -> str:
        """What to append to the last result of ``step`` (whose calls are named ``calls``): the
        plan when it is due, else ""."""
        if "todo" in calls:
            self.shown_at = step
            return ""
        if not todo or not calls or step - self.shown_at < self.every:
            return ""
        self.shown_at = step
        return "\n\n" + loop_note("plan_reminder", plan=render_todo(todo))

    def saved(self) -> dict[str, Any]:
        return {"shown_at": self.shown_at}

    @classmethod
    def restore(cls, agent_state: dict[str, Any]) -> PlanReminder:
        """From the agent state saved with a step; sessions saved before kept ``plan_reminded``
        at its top level."""
        saved = agent_state.get("plan")
        if saved is None:
            return cls(shown_at=int(agent_state.get("plan_reminded", 0)))
        return cls(shown_at=int(saved.get("shown_at", 0)))
