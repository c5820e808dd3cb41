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


def test_the_time_limit_ends_a_step_that_runs_past_it(calc_repo, tmp_path):
    """A command still running when max_time is up is stopped: the run ends "time budget
    exhausted" (exit 3) within a few seconds of the limit, not when the command ends."""
    import time

    from kcode.agent.runner import run_task
    from kcode.config import Config
    from tests.conftest import write_script

    script = write_script(tmp_path / "s.json", [
        {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 60"}}]},
        {"tool_calls": [{"name": "finish", "arguments": {"summary": "done"}}]},
    ])
    started = time.monotonic()
    outcome = run_task("Review the calc package", Config(model=f"scripted:{script}", max_time=3.0, sandbox="off"), repo=calc_repo)
    took = time.monotonic() - started
    assert outcome.result.status == "budget_exhausted" and outcome.result.exit_code == 3
    assert "time budget exhausted" in outcome.result.summary and "in step 1" in outcome.result.summary
    assert took < 30, took
