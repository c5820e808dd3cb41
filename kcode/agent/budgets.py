"""Budgets: a run's limits on steps, wall time and tokens, and the warnings on the way.

A ``budget.warning`` event at 50, 80 and 95 % of each limit (for the user; the model is not
told); at a limit the run stops with :class:`~kcode.errors.BudgetExhausted` (exit code 3) and
``kcode resume`` with a higher limit continues it. Steps and tokens are checked before each
step; the time limit also ends a step that runs past it (:meth:`BudgetWatch.time_limit`), so a
long answer or command cannot overrun ``max_time`` by a whole step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kcode.cancel import CancelToken

from kcode.errors import BudgetExhausted
from kcode.events import BudgetWarning

__all__ = ["Budget", "BudgetWatch", "WARN_AT"]

WARN_AT = (0.5, 0.8, 0.95)  # fractions of a limit that draw a warning
_UNITS = {"steps": "steps", "time": "seconds", "tokens": "tokens"}


@dataclass
class Budget:
    max_steps: int = 1000
    max_time: float = 12 * 3600.0  # seconds, earlier runs of a resumed session included
    max_tokens: int | None = None  # tokens the model computed: input + output (a reused prefix not counted)


@dataclass
class BudgetWatch:
    """Checks a run's spending against its :class:`Budget` before every step. The warnings
    already given are not saved: a resumed run (with new limits, often) warns again."""

    budget: Budget
    warned: set[tuple[str, float]] = field(default_factory=set)  # (budget name, fraction)

    def check(self, *, steps: int, seconds: float, tokens: int, emit: Callable[[Any], Any]) -> None:
        """Emit the warnings now due; raise BudgetExhausted when a limit is reached."""
        used = {"steps": (steps, self.budget.max_steps), "time": (seconds, self.budget.max_time)}
        if self.budget.max_tokens:
            used["tokens"] = (tokens, self.budget.max_tokens)
        for name, (spent, limit) in used.items():
            if spent >= limit:
                raise BudgetExhausted(name, f"{name} budget exhausted ({spent:.0f} of {limit:.0f} {_UNITS[name]})")
            for fraction in WARN_AT:
                if spent >= fraction * limit and (name, fraction) not in self.warned:
                    self.warned.add((name, fraction))
                    emit(BudgetWarning(budget=name, fraction=fraction, used=spent, limit=limit))

    @contextmanager
    def time_limit(self, seconds_left: float, cancel: CancelToken) -> Iterator[Callable[[], bool]]:
        """Cancel ``cancel`` (the run's own token) when the time budget runs out, in the middle
        of a step too; yields a function that says whether it did."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            cancel.cancel()

        timer = threading.Timer(max(seconds_left, 0.0), expire)
        timer.daemon = True
        timer.start()
        try:
            yield expired.is_set
        finally:
            timer.cancel()
