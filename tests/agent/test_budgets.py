from __future__ import annotations

import pytest

from kcode.agent.budgets import Budget, BudgetWatch
from kcode.errors import BudgetExhausted


def test_each_warning_comes_once_and_the_limit_stops():
    watch = BudgetWatch(Budget(max_steps=10, max_time=1000.0, max_tokens=100))
    warnings = []
    for step in range(10):
        watch.check(steps=step, seconds=1.0, tokens=10 * step, emit=warnings.append)
    assert [(w.budget, w.fraction, w.used) for w in warnings] == [("steps", 0.5, 5), ("tokens", 0.5, 50), ("steps", 0.8, 8), ("tokens", 0.8, 80)]
    with pytest.raises(BudgetExhausted) as stop:
        watch.check(steps=10, seconds=1.0, tokens=0, emit=warnings.append)
    assert stop.value.budget == "steps" and str(stop.value) == "steps budget exhausted (10 of 10 steps)"


def test_a_jump_past_several_fractions_warns_for_each():
    watch = BudgetWatch(Budget(max_time=100.0))
    warnings = []
    watch.check(steps=0, seconds=96.0, tokens=0, emit=warnings.append)
    assert [(w.budget, w.fraction) for w in warnings] == [("time", 0.5), ("time", 0.8), ("time", 0.95)]
    with pytest.raises(BudgetExhausted, match=r"time budget exhausted \(100 of 100 seconds\)"):
        watch.check(steps=0, seconds=100.0, tokens=0, emit=warnings.append)


def test_no_token_budget_means_tokens_are_not_watched():
    watch = BudgetWatch(Budget())
    warnings = []
    watch.check(steps=0, seconds=0.0, tokens=10**9, emit=warnings.append)
    assert warnings == []
